package docker

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/imdsdev/imds/internal/ec2"
)

func TestParseLabels(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		want    Labels
		wantErr string
	}{
		{name: "none", labels: nil},
		{name: "other labels ignored", labels: map[string]string{"maintainer": "me", "org.opencontainers.image.title": "x"}},
		{name: "everything", labels: map[string]string{
			"imds.enable": "true", "imds.name": "web-1", "imds.role": "app-role", "imds.instance-type": "t3.micro",
			"imds.user-data": "#cloud-config\n", "imds.imdsv2": "required", "imds.tag.team": "blue", "imds.tag.Name": "front",
			"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
		}, want: Labels{Enable: &on, Name: "web-1", Role: "app-role", InstanceType: "t3.micro", UserData: []byte("#cloud-config\n"),
			IMDSv2: "required", Tags: []ec2.Tag{{Key: "Name", Value: "front"}, {Key: "team", Value: "blue"},
				{Key: "compose:project", Value: "shop"}, {Key: "compose:service", Value: "web"}}}},
		{name: "opt out", labels: map[string]string{"imds.enable": "false"}, want: Labels{Enable: &off}},
		{name: "empty user-data is user-data", labels: map[string]string{"imds.user-data": ""}, want: Labels{UserData: []byte{}}},
		{name: "bad values, every one said", labels: map[string]string{
			"imds.enable": "yes", "imds.imdsv2": "requierd", "imds.name": "-web", "imds.role": "a b", "imds.instance-type": "big",
		}, wantErr: `label "imds.enable": must be true or false, got "yes"` + "\n" +
			`label "imds.imdsv2": must be optional or required, got "requierd"` + "\n" +
			`label "imds.instance-type": must look like m5.large, got "big"` + "\n" +
			`label "imds.name": the instance name "-web" must start with a letter, a digit or '_'` + "\n" +
			`label "imds.role": must be a role name of 1-64 letters, digits and +=,.@_-, got "a b"`},
		{name: "typo", labels: map[string]string{"imds.rol": "x"},
			wantErr: `label "imds.rol": unknown label; did you mean imds.role? (imds reads imds.enable, imds.name, imds.role, imds.instance-type, imds.user-data, imds.imdsv2, imds.tag.<key>)`},
		{name: "tag without key", labels: map[string]string{"imds.tag.": "x"}, wantErr: `label "imds.tag.": needs a tag key after imds.tag.`},
		{name: "control characters quoted", labels: map[string]string{"imds.enable": "true\nlevel=ERROR"},
			wantErr: `label "imds.enable": must be true or false, got "true\nlevel=ERROR"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLabels(tc.labels)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err=%v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("ParseLabels (-got +want):\n%s", diff)
			}
		})
	}
}

func FuzzParseLabels(f *testing.F) {
	f.Add("imds.enable", "true", "imds.tag.team", "blue")
	f.Add("imds.role", "app-role", "imds.name", "web")
	f.Add("imds.imdsv2", "required", "imds.user-data", "#!/bin/sh\n")
	f.Add("imds.rol", "x", "imds.tag.", "")
	f.Add("com.docker.compose.project", "shop", "imds.instance-type", "t3.micro")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		l, err := ParseLabels(map[string]string{k1: v1, k2: v2})
		if err != nil {
			// Every line names a label and stays printable: it goes to the log.
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "label \"") || !utf8.ValidString(line) && utf8.ValidString(k1+k2) {
					t.Fatalf("error line %q does not name its label", line)
				}
				if strings.ContainsAny(line, "\r") {
					t.Fatalf("error line %q carries a raw control character", line)
				}
			}
			return
		}
		if l.Name != "" && ec2.CheckName(l.Name) != nil {
			t.Fatalf("name %q accepted", l.Name)
		}
		if l.IMDSv2 != "" && l.IMDSv2 != ec2.TokensOptional && l.IMDSv2 != ec2.TokensRequired {
			t.Fatalf("imdsv2 %q accepted", l.IMDSv2)
		}
		for _, tg := range l.Tags {
			if tg.Key == "" {
				t.Fatalf("empty tag key accepted from %q=%q %q=%q", k1, v1, k2, v2)
			}
		}
	})
}
