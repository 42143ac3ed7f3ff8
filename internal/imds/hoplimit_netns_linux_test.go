//go:build linux

package imds_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/imdsdev/imds/internal/netsetup"
)

// TestTokenAckedByTheFIN reproduces, deterministically, a client that reads
// its token and closes at once while its acknowledgement is delayed: inside
// a namespace of its own, nftables drops the client's pure ACKs to the
// server, so the token's acknowledgement reaches the server only with the
// client's FIN, which also ends the request's context. The token was
// delivered, and must be recorded as such (status 200, no fault), not as
// status=0 fault=hop-limit.
func TestTokenAckedByTheFIN(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ns := fmt.Sprintf("imdsack-%d", os.Getpid())
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
	sh("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	sh("ip", "-n", ns, "link", "set", "lo", "up")
	const port = 1338
	rules := fmt.Sprintf("table inet imdsack { chain in { type filter hook input priority 0; tcp dport %d tcp flags == ack drop; }; }", port)
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}

	fx := prepareFixture(t, defaultInstance())
	log := &lockedBuffer{}
	rec := &recorder{}
	fx.srv.Logger = slog.New(slog.NewTextHandler(log, nil))
	fx.srv.Recorder = rec
	fx.srv.Listen = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	if err := netsetup.InNetns(ns, fx.srv.Open); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fx.srv.Close(ctx)
	})
	const n = 10
	for i := range n {
		var c net.Conn
		if err := netsetup.InNetns(ns, func() (err error) {
			c, err = net.DialTimeout("tcp", fx.srv.Addrs()[0].String(), ioWait)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		resp, tok, err := roundTrip(c, "PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n")
		if err != nil || resp.StatusCode != 200 || tok == "" {
			t.Fatalf("PUT %d: %v %v %q", i, resp, err, tok)
		}
		// Long enough for the server to be waiting for the acknowledgement,
		// far shorter than its retransmission timeout.
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}
	deadline := time.Now().Add(ioWait)
	for len(rec.all()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests recorded", len(rec.all()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range rec.all() {
		if r.Status != 200 || r.Fault != "" {
			t.Errorf("a delivered token recorded as status=%d fault=%q", r.Status, r.Fault)
		}
	}
	if strings.Contains(log.String(), "hop-limit") {
		t.Errorf("the log reports a hop-limit drop:\n%s", log.String())
	}
}
