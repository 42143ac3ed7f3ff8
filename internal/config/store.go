package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/imdsdev/imds/internal/ec2"
)

// Defaults of store.etcd.
const (
	DefaultEtcdPrefix      = "/imds/"
	DefaultEtcdDialTimeout = 5 * time.Second
)

// Store says where instances registered at run time are kept: a bbolt
// file in the data directory (Etcd nil, the default) or an etcd cluster
// shared by several imds hosts.
type Store struct {
	Etcd *EtcdStore
}

// EtcdStore is store.etcd: how to reach the etcd cluster.
type EtcdStore struct {
	// Endpoints are client URLs (http:// or https://host:port).
	Endpoints []string
	// Prefix starts every key imds writes; it ends with "/".
	Prefix string
	// CA, Cert and Key are PEM files (tls:): the CA that signed the
	// servers' certificates, and this host's client certificate and key
	// for servers that require one. Absolute paths after Parse.
	CA, Cert, Key string
	// Username and PasswordFile authenticate with etcd's own users; the
	// password is read from the file at start-up, never from the config.
	Username, PasswordFile string
	// DialTimeout bounds connecting and each request.
	DialTimeout time.Duration
	// Host names this imds among the hosts sharing the store (imds host
	// list); empty means the machine's host name.
	Host string
}

// store decodes store:, either the word bolt or a mapping with one of
// bolt: or etcd:.
func (d *decoder) store(path string, line int, v *yaml.Node, f *File) {
	rv := resolve(v)
	if isNull(rv) {
		return
	}
	if rv.Kind == yaml.ScalarNode {
		if s, ok := d.enum(path, line, v, "bolt"); ok && s == "bolt" {
			f.Store = Store{}
		}
		return
	}
	var backends []string
	d.mapping(path, line, v, schema{
		"bolt": func(p string, l int, v *yaml.Node) {
			backends = append(backends, "bolt")
			// Nothing to set: the file is data_dir/imds.db.
			d.mapping(p, l, v, schema{})
		},
		"etcd": func(p string, l int, v *yaml.Node) {
			backends = append(backends, "etcd")
			f.Store.Etcd = d.etcd(p, l, v)
		},
	})
	if len(backends) > 1 {
		f.Store.Etcd = nil
		d.errorf(line, path, "names both %s: choose one store", strings.Join(backends, " and "))
	}
}

func (d *decoder) etcd(path string, line int, v *yaml.Node) *EtcdStore {
	e := &EtcdStore{Prefix: DefaultEtcdPrefix, DialTimeout: DefaultEtcdDialTimeout}
	var endpointsSet, tlsSet bool
	valid := true
	file := func(dst *string) field {
		return func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				if s == "" {
					d.errorf(l, p, "must be a file path, got an empty string")
					valid = false
					return
				}
				*dst = d.resolvePath(s)
			}
		}
	}
	ok := d.mapping(path, line, v, schema{
		"endpoints": func(p string, l int, v *yaml.Node) {
			eps, ok := d.strs(p, l, v)
			if !ok {
				valid = false
				return
			}
			for i, ep := range eps {
				if problem := endpointProblem(ep); problem != "" {
					d.errorf(l, fmt.Sprintf("%s[%d]", p, i), "%s", problem)
					valid = false
				}
			}
			if len(eps) == 0 {
				d.errorf(l, p, "must list at least one etcd client URL")
				valid = false
			}
			e.Endpoints, endpointsSet = eps, true
		},
		"prefix": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\n\x00") {
					d.errorf(l, p, "must be a key prefix starting with / like %s, got %q", DefaultEtcdPrefix, s)
					valid = false
					return
				}
				if !strings.HasSuffix(s, "/") {
					s += "/"
				}
				e.Prefix = s
			}
		},
		"tls": func(p string, l int, v *yaml.Node) {
			tlsSet = true
			d.mapping(p, l, v, schema{
				"ca":   file(&e.CA),
				"cert": file(&e.Cert),
				"key":  file(&e.Key),
			})
		},
		"host": func(p string, l int, v *yaml.Node) {
			if s, ok := d.str(p, l, v); ok {
				if err := ec2.CheckHostName(s); err != nil {
					d.errorf(l, p, "%s", err)
					valid = false
					return
				}
				e.Host = s
			}
		},
		"username":      d.into(&e.Username),
		"password_file": file(&e.PasswordFile),
		"dial_timeout": func(p string, l int, v *yaml.Node) {
			if t, ok := d.duration(p, l, v, 100*time.Millisecond, 5*time.Minute); ok {
				e.DialTimeout = t
			} else if !isNull(resolve(v)) {
				valid = false
			}
		},
	})
	if !ok || !valid {
		return nil
	}
	switch {
	case !endpointsSet:
		d.errorf(line, path+".endpoints", "is required (the client URLs of the etcd cluster, like http://127.0.0.1:2379)")
	case (e.Cert == "") != (e.Key == ""):
		d.errorf(line, path+".tls", "cert and key go together: give both or neither")
	case e.Username != "" && e.PasswordFile == "":
		d.errorf(line, path+".password_file", "is required with username (a file holding the password)")
	case e.Username == "" && e.PasswordFile != "":
		d.errorf(line, path+".username", "is required with password_file")
	case tlsSet && !allHTTPS(e.Endpoints):
		d.errorf(line, path+".endpoints", "must all be https:// URLs when tls is set")
	default:
		return e
	}
	return nil
}

// endpointProblem says what is wrong with an etcd client URL, or "".
func endpointProblem(ep string) string {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Sprintf("must be an etcd client URL like http://127.0.0.1:2379, got %q", ep)
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return fmt.Sprintf("must name a port, like http://127.0.0.1:2379, got %q", ep)
	}
	return ""
}

func allHTTPS(eps []string) bool {
	for _, ep := range eps {
		if !strings.HasPrefix(ep, "https://") {
			return false
		}
	}
	return true
}
