// Command client is the application of the compose example and of the image
// tests: a program written for EC2 that reads its identity and role
// credentials from instance metadata with the AWS SDK for Go's own clients
// (IMDSv2, the endpoint the SDK defaults to, 169.254.169.254, unless
// AWS_EC2_METADATA_SERVICE_ENDPOINT says otherwise), prints them as one
// JSON line and exits. It retries for up to a minute while imds starts
// (CLIENT_TIMEOUT, a Go duration, changes that).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// identity is what the client prints. The secret key is never printed.
type identity struct {
	InstanceID  string `json:"instance_id"`
	Region      string `json:"region"`
	AccessKeyID string `json:"access_key_id"`
	Expires     string `json:"expires"`
}

func main() {
	timeout := time.Minute
	if v := os.Getenv("CLIENT_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "client: CLIENT_TIMEOUT %q: want a positive duration like 30s\n", v)
			os.Exit(2)
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		id, err := fetch(ctx)
		if err == nil {
			if err := json.NewEncoder(os.Stdout).Encode(id); err != nil {
				fmt.Fprintln(os.Stderr, "client:", err)
				os.Exit(1)
			}
			return
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	fmt.Fprintln(os.Stderr, "client: giving up:", last)
	os.Exit(1)
}

func fetch(ctx context.Context) (*identity, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		return nil, err
	}
	client := imds.NewFromConfig(cfg)
	out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"})
	if err != nil {
		return nil, fmt.Errorf("instance-id: %w", err)
	}
	b, err := io.ReadAll(out.Content)
	out.Content.Close()
	if err != nil {
		return nil, err
	}
	region, err := client.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	creds, err := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client }).Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	return &identity{InstanceID: strings.TrimSpace(string(b)), Region: region.Region,
		AccessKeyID: creds.AccessKeyID, Expires: creds.Expires.UTC().Format(time.RFC3339)}, nil
}
