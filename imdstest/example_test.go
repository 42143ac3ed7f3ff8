package imdstest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/imdsdev/imds/imdstest"
)

// get reads a metadata path the IMDSv2 way: a session token first, then
// the path with it (without one if the server gave none).
func get(base, path string) (int, string) {
	req, _ := http.NewRequest(http.MethodPut, base+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	token, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequest(http.MethodGet, base+path, nil)
	if resp.StatusCode == http.StatusOK {
		req.Header.Set("X-aws-ec2-metadata-token", string(token))
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A server with one instance, read with plain HTTP. In a test, call
// imdstest.NewServer(t, ...) instead of Start: it closes the server when
// the test ends.
func ExampleStart() {
	srv, err := imdstest.Start(imdstest.WithInstance(imdstest.Instance{
		Name:           "web-1",
		InstanceID:     "i-0123456789abcdef0",
		Region:         "eu-west-1",
		Tags:           map[string]string{"Name": "web-1", "team": "platform"},
		UserData:       []byte("#cloud-config\n"),
		IMDSv2Required: true,
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	for _, path := range []string{
		"/latest/meta-data/instance-id",
		"/latest/meta-data/placement/region",
		"/latest/meta-data/tags/instance",
		"/latest/user-data",
	} {
		_, body := get(srv.URL(), path)
		fmt.Printf("%s: %q\n", path, body)
	}
	// IMDSv1 (no token) is refused: the instance requires IMDSv2.
	resp, err := http.Get(srv.URL() + "/latest/meta-data/instance-id")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println("without a token:", resp.StatusCode)
	// Output:
	// /latest/meta-data/instance-id: "i-0123456789abcdef0"
	// /latest/meta-data/placement/region: "eu-west-1"
	// /latest/meta-data/tags/instance: "Name\nteam"
	// /latest/user-data: "#cloud-config\n"
	// without a token: 401
}

// Role credentials through the AWS SDK for Go v2's ec2rolecreds provider,
// the one its default credential chain ends with on EC2. With
// srv.Setenv(t) in a test, config.LoadDefaultConfig finds it by itself.
func ExampleServer_ec2rolecreds() {
	srv, err := imdstest.Start(imdstest.WithInstance(imdstest.Instance{Name: "app", Role: "app-role"}))
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	client := imds.New(imds.Options{Endpoint: srv.URL()})
	provider := ec2rolecreds.New(func(o *ec2rolecreds.Options) { o.Client = client })
	creds, err := provider.Retrieve(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("source:", creds.Source)
	fmt.Println("temporary key:", strings.HasPrefix(creds.AccessKeyID, "ASIA"), creds.SessionToken != "")
	fmt.Println("expires in the future:", creds.CanExpire && creds.Expires.After(time.Now()))
	// Output:
	// source: EC2RoleProvider
	// temporary key: true true
	// expires in the future: true
}

// A spot interruption notice, as a workload that drains on interruption
// polls for it.
func ExampleServer_SpotInterruption() {
	srv, err := imdstest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	code, _ := get(srv.URL(), "/latest/meta-data/spot/instance-action")
	fmt.Println("before the notice:", code)

	if err := srv.SpotInterruption("", "stop", 2*time.Minute); err != nil {
		log.Fatal(err)
	}
	code, body := get(srv.URL(), "/latest/meta-data/spot/instance-action")
	var notice struct {
		Action string
		Time   time.Time
	}
	if err := json.Unmarshal([]byte(body), &notice); err != nil {
		log.Fatal(err)
	}
	left := time.Until(notice.Time)
	fmt.Println("after the notice:", code, notice.Action, left > time.Minute && left <= 2*time.Minute)
	_, lifecycle := get(srv.URL(), "/latest/meta-data/instance-life-cycle")
	fmt.Println("instance-life-cycle:", lifecycle)
	// Output:
	// before the notice: 404
	// after the notice: 200 stop true
	// instance-life-cycle: spot
}

// Injected faults, to test a client's retries; the request record shows
// which requests were hit.
func ExampleServer_SetFaults() {
	srv, err := imdstest.Start()
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	if err := srv.SetFaults("", imdstest.Faults{ErrorRate: 1, ErrorStatus: 500}); err != nil {
		log.Fatal(err)
	}
	code, _ := get(srv.URL(), "/latest/meta-data/instance-id")
	fmt.Println("with the fault:", code)

	srv.SetFaults("", imdstest.Faults{})
	code, _ = get(srv.URL(), "/latest/meta-data/instance-id")
	fmt.Println("without:", code)

	for _, r := range srv.Requests("") {
		fmt.Println(r.Method, r.Path, r.Status, r.Fault != "")
	}
	// Output:
	// with the fault: 500
	// without: 200
	// PUT /latest/api/token 500 true
	// GET /latest/meta-data/instance-id 500 true
	// PUT /latest/api/token 200 false
	// GET /latest/meta-data/instance-id 200 false
}
