// Command probe is the application container of the Docker discovery
// tests: static, FROM scratch, it serves GET /probe on :8080, which reads
// the container's own instance-id, role and role credentials from
// http://169.254.169.254/ with the AWS SDK for Go's IMDS client (IMDSv2)
// and answers them as JSON, or the HTTP status the SDK met.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

type result struct {
	InstanceID  string `json:"instance_id,omitempty"`
	Role        string `json:"role,omitempty"`
	AccessKeyID string `json:"access_key_id,omitempty"`
	Status      int    `json:"status,omitempty"` // the HTTP status of a failure
	Error       string `json:"error,omitempty"`
}

func main() {
	client := imds.New(imds.Options{Endpoint: "http://169.254.169.254/",
		Retryer: aws.NopRetryer{}, ClientEnableState: imds.ClientEnabled})
	http.HandleFunc("GET /probe", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		json.NewEncoder(w).Encode(probe(ctx, client))
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}

func probe(ctx context.Context, client *imds.Client) (res result) {
	fail := func(what string, err error) result {
		res.Error = what + ": " + err.Error()
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			res.Status = re.HTTPStatusCode()
		}
		return res
	}
	get := func(path string) (string, error) {
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", err
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		return strings.TrimSpace(string(b)), err
	}
	var err error
	if res.InstanceID, err = get("instance-id"); err != nil {
		return fail("instance-id", err)
	}
	if res.Role, err = get("iam/security-credentials/"); err != nil {
		return fail("role", err)
	}
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(ctx)
	if err != nil {
		return fail("credentials", err)
	}
	res.AccessKeyID = creds.AccessKeyID
	return res
}
