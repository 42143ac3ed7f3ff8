package admin

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"

	"github.com/imdsdev/imds/internal/ec2"
)

// mediaTypes are the Content-Types a request body may have.
type mediaTypes struct {
	say   string   // for the message, e.g. "application/json"
	types []string // "" admits a request without a Content-Type
}

var (
	jsonBody     = mediaTypes{say: "application/json", types: []string{"", "application/json"}}
	documentBody = mediaTypes{say: "application/json or application/yaml",
		types: []string{"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}}
)

// readBody checks the Content-Type of r against mt and reads its body,
// which serveHTTP has limited to MaxBody. Every error is EINVALID.
func readBody(r *http.Request, mt mediaTypes) ([]byte, error) {
	ctype := r.Header.Get("Content-Type")
	t := ""
	if ctype != "" {
		var err error
		if t, _, err = mime.ParseMediaType(ctype); err != nil {
			t = "\x00" // matches none
		}
	}
	if !slices.Contains(mt.types, t) {
		return nil, ec2.Errorf(ec2.EINVALID, "Content-Type must be %s, got %q", mt.say, ctype)
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, ec2.Errorf(ec2.EINVALID, "request body larger than %d bytes", tooBig.Limit)
		}
		return nil, ec2.Errorf(ec2.EINVALID, "reading the request body: %v", err)
	}
	return data, nil
}
