package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/imdsdev/imds/internal/ec2"
)

// strictJSON decodes one request body as exactly one JSON object with known
// fields, turning every problem into an EINVALID message that names it.
type strictJSON struct {
	empty  string                    // the message for an empty body
	kind   func(field string) string // what a field must be, e.g. "a string"
	fields string                    // the valid fields, for unknown-field errors
}

func (s strictJSON) decode(data []byte, into any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return ec2.Errorf(ec2.EINVALID, "%s", s.empty)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return ec2.Errorf(ec2.EINVALID, "%s: must be %s, got a JSON %s", typeErr.Field, s.kind(typeErr.Field), typeErr.Value)
		case errors.As(err, &typeErr):
			return ec2.Errorf(ec2.EINVALID, "the body must be a JSON object, got a JSON %s", typeErr.Value)
		case errors.As(err, &syntaxErr):
			return ec2.Errorf(ec2.EINVALID, "the body is not valid JSON: %s (at byte %d)", strings.TrimPrefix(syntaxErr.Error(), "json: "), syntaxErr.Offset)
		}
		if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return ec2.Errorf(ec2.EINVALID, "unknown field %s; the fields are %s", field, s.fields)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return ec2.Errorf(ec2.EINVALID, "the body is not valid JSON: it ends early")
		}
		return ec2.Errorf(ec2.EINVALID, "the body is not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return ec2.Errorf(ec2.EINVALID, "the body must hold one JSON object and nothing after it")
	}
	return nil
}
