// Package imdstest runs a real imds instance metadata service inside a Go
// test, the way net/http/httptest runs an HTTP server: NewServer starts it
// on 127.0.0.1 with a free port and a private data directory, and closes it
// when the test ends.
//
// The server is the same one `imds serve` runs, so IMDSv1 and IMDSv2, the
// token rules, role credentials, spot notices, maintenance events and
// injected faults behave as they do against the daemon. Nothing global is
// changed unless the test asks: point a client at Server.URL, or call
// Server.Setenv to aim every AWS SDK in the process at the server.
//
// From another module:
//
//	go get github.com/imdsdev/imds@latest
//
//	func TestUploader(t *testing.T) {
//		srv := imdstest.NewServer(t, imdstest.WithInstance(imdstest.Instance{
//			Name: "web-1", Role: "uploader", IMDSv2Required: true,
//		}))
//		srv.Setenv(t) // AWS_EC2_METADATA_SERVICE_ENDPOINT and no other credential source
//		cfg, err := config.LoadDefaultConfig(ctx) // the SDK now gets credentials from srv
//		...
//		srv.SpotInterruption("", "terminate", 2*time.Minute)
//		// the code under test should notice and drain
//	}
//
// Requests come from 127.0.0.1, which the first instance answers (the
// server's default instance). Further instances answer requests from the
// addresses in their SourceAddrs, for example 127.0.0.2: on Linux every
// address of 127.0.0.0/8 is on the loopback interface, so a client that
// binds its local address to one of them is that instance.
//
// Outside a test (an Example, a TestMain), Start returns the server and
// Close stops it.
//
// The server writes its log with t.Log (shown for failed tests and with
// go test -v) unless WithLog says otherwise. It needs no privileges and
// no network beyond loopback.
package imdstest
