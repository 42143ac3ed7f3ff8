// Command probe is the application container of the Docker discovery
// tests: static, FROM scratch, it serves GET /probe on :8080, which reads
// the container's own instance-id, role and role credentials from
// http://169.254.169.254/ with the AWS SDK for Go's IMDS client (IMDSv2)
// and answers them as JSON, or the HTTP status the SDK met. Query
// parameters make it an attacker: xff sets X-Forwarded-For, instance the
// proxy identity header X-Instance-ID, from the source address; POST
// /steal?addr=A (with NET_ADMIN) takes address A on eth0 and announces it
// with gratuitous ARP, as a container taking another's address would.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

type result struct {
	InstanceID  string `json:"instance_id,omitempty"`
	Role        string `json:"role,omitempty"`
	AccessKeyID string `json:"access_key_id,omitempty"`
	Status      int    `json:"status,omitempty"` // the HTTP status of a failure
	Error       string `json:"error,omitempty"`
}

func main() {
	http.HandleFunc("GET /probe", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		q := r.URL.Query()
		client, err := newClient(q.Get("from"), q.Get("xff"), q.Get("instance"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(probe(ctx, client))
	})
	http.HandleFunc("POST /steal", func(w http.ResponseWriter, r *http.Request) {
		if err := steal(r.URL.Query().Get("addr")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}

// newClient is the SDK's IMDS client, sending from the address from (if
// set) and with the headers of an attacker (if set).
func newClient(from, xff, instance string) (*imds.Client, error) {
	d := &net.Dialer{Timeout: 3 * time.Second}
	if from != "" {
		a, err := netip.ParseAddr(from)
		if err != nil {
			return nil, err
		}
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	return imds.New(imds.Options{Endpoint: "http://169.254.169.254/", Retryer: aws.NopRetryer{}, ClientEnableState: imds.ClientEnabled,
		HTTPClient: &http.Client{Transport: headers{tr, xff, instance}}}), nil
}

type headers struct {
	next          http.RoundTripper
	xff, instance string
}

func (h headers) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h.xff != "" {
		r.Header.Set("X-Forwarded-For", h.xff)
	}
	if h.instance != "" {
		r.Header.Set("X-Instance-ID", h.instance)
		r.Header.Set("X-Instance-ID-Signature", strings.Repeat("0", 64))
	}
	return h.next.RoundTrip(r)
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

// steal adds addr to eth0 and announces it three times with gratuitous ARP
// (the kernel ignores a neighbour update within a second of the last).
func steal(addr string) error {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return errors.New("addr: want an IPv4 address")
	}
	link, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	ipn, err := netlink.ParseAddr(addr + "/32")
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, ipn); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	mac := link.Attrs().HardwareAddr
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	ip := a.AsSlice()
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		for _, op := range []byte{1, 2} {
			frame := append(append(append([]byte{}, bcast...), mac...), 0x08, 0x06, // Ethernet: broadcast, ARP
				0, 1, 0x08, 0x00, 6, 4, 0, op) // ARP: Ethernet, IPv4, request or reply
			frame = append(append(frame, mac...), ip...)   // sender: our MAC, the address
			frame = append(append(frame, bcast...), ip...) // target: the same address
			sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index, Halen: 6}
			copy(sa.Addr[:], bcast)
			if err := unix.Sendto(fd, frame, 0, sa); err != nil {
				return err
			}
		}
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
