package dashboard

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/imdsdev/imds/internal/admin"
	"github.com/imdsdev/imds/internal/config"
	"github.com/imdsdev/imds/internal/ec2"
)

// instanceForm is the add and edit form: the flags of `imds instance add`
// and `imds instance set`, by their names. A field left out is a flag not
// given; an edit changes only those given.
type instanceForm struct {
	Name         string    `json:"name"`
	IP           *[]string `json:"ip"`
	MAC          *string   `json:"mac"`
	Role         *string   `json:"role"`
	Tags         []string  `json:"tag"`
	IMDSv2       *string   `json:"imdsv2"`
	InstanceType *string   `json:"instance-type"`
	Region       *string   `json:"region"`
	Host         *string   `json:"host"`
}

// update checks the form as the CLI checks its flags, with the same
// messages, and returns the change it asks for. With set, a tag KEY-
// removes KEY.
func (f *instanceForm) update(set bool) (ec2.InstanceUpdate, error) {
	var u ec2.InstanceUpdate
	if f.IP != nil {
		addrs := []string{}
		for _, s := range *f.IP {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			a, err := ec2.ParseSourceAddr(s)
			if err != nil {
				return u, invalid("--ip", err)
			}
			addrs = append(addrs, a)
		}
		u.SourceAddrs = &addrs
	}
	if f.MAC != nil {
		mac := *f.MAC
		if mac != "" {
			var err error
			if mac, err = ec2.ParseMACAddr(mac); err != nil {
				return u, invalid("--mac", err)
			}
		}
		u.MAC = &mac
	}
	for _, t := range f.Tags {
		e, err := ec2.ParseTagEdit(t, set)
		if err != nil {
			return u, invalid("--tag", err)
		}
		u.Tags = append(u.Tags, e)
	}
	if f.IMDSv2 != nil {
		if err := ec2.CheckTokensMode(*f.IMDSv2); err != nil {
			return u, invalid("--imdsv2", err)
		}
		u.HTTPTokens = f.IMDSv2
	}
	if f.InstanceType != nil {
		if err := ec2.CheckNotEmpty(*f.InstanceType); err != nil {
			return u, invalid("--instance-type", err)
		}
		u.InstanceType = f.InstanceType
	}
	if f.Region != nil {
		if err := ec2.CheckNotEmpty(*f.Region); err != nil {
			return u, invalid("--region", err)
		}
		u.Region = f.Region
	}
	if f.Host != nil {
		if *f.Host != "" {
			if err := ec2.CheckHostName(*f.Host); err != nil {
				return u, invalid("--host", err)
			}
		}
		u.Host = f.Host
	}
	u.Role = f.Role
	return u, nil
}

// invalid is the error of a form field, named by its flag.
func invalid(flag string, err error) error { return ec2.Errorf(ec2.EINVALID, "%s: %v", flag, err) }

func readForm(w http.ResponseWriter, r *http.Request) (*instanceForm, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, ec2.Errorf(ec2.EINVALID, "the form is larger than 1 MiB")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f instanceForm
	if err := dec.Decode(&f); err != nil {
		return nil, ec2.Errorf(ec2.EINVALID, "the form is not a JSON object of instance fields: %v", err)
	}
	return &f, nil
}

// serveAdd adds an instance as `imds instance add NAME [flags]` does: the
// default instance, changed by the flags, sent to the admin API.
func (d *Dashboard) serveAdd(w http.ResponseWriter, r *http.Request) {
	f, err := readForm(w, r)
	if err == nil && f.Name == "" {
		err = ec2.Errorf(ec2.EINVALID, "add needs an instance NAME")
	}
	var u ec2.InstanceUpdate
	if err == nil {
		u, err = f.update(false)
	}
	if err != nil {
		writeAppError(w, err)
		return
	}
	spec := ec2.NewDefaultInstance()
	spec.Name = f.Name
	u.Apply(spec)
	inst, err := d.Admin.AddInstance(r.Context(), spec)
	if err != nil {
		writeAppError(w, err)
		return
	}
	writeInstance(w, http.StatusCreated, inst)
}

// serveEdit changes an instance as `imds instance set NAME [flags]` does.
func (d *Dashboard) serveEdit(w http.ResponseWriter, r *http.Request) {
	f, err := readForm(w, r)
	var u ec2.InstanceUpdate
	if err == nil {
		u, err = f.update(true)
	}
	if err == nil && u.IsZero() {
		err = ec2.Errorf(ec2.EINVALID, "nothing to change: give at least one field")
	}
	if err != nil {
		writeAppError(w, err)
		return
	}
	inst, err := d.Admin.UpdateInstance(r.Context(), r.PathValue("name"), u)
	if err != nil {
		writeAppError(w, err)
		return
	}
	writeInstance(w, http.StatusOK, inst)
}

func writeInstance(w http.ResponseWriter, status int, inst *ec2.Instance) {
	doc, err := config.MarshalInstance(inst)
	if err == nil {
		doc, err = hideUserData(doc)
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, ec2.EINTERNAL, "cannot render the instance")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(doc, '\n'))
}

// writeAppError renders err with the status the admin API gives its code.
func writeAppError(w http.ResponseWriter, err error) {
	code := ec2.ErrorCode(err)
	msg := ec2.ErrorMessage(err)
	if code == ec2.EINTERNAL {
		msg = "the server failed with an internal error; see its log"
	}
	writeError(w, admin.StatusOf(code), code, msg)
}
