package backup

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadInputIsRefusedNamingTheField(t *testing.T) {
	good := Store{Endpoint: "s3.example.org:443", Bucket: "backups", AccessKey: "a", SecretKey: "s"}
	db := Database{Host: "db", Port: 5432, Name: "coop", User: "coop"}
	for _, tc := range []struct {
		name string
		err  error
		says string
	}{
		{"no endpoint", func() error { s := good; s.Endpoint = ""; return s.Validate() }(), "store endpoint is required"},
		{"endpoint with scheme", func() error { s := good; s.Endpoint = "https://s3.example.org"; return s.Validate() }(), "without a scheme"},
		{"no bucket", func() error { s := good; s.Bucket = ""; return s.Validate() }(), "store bucket is required"},
		{"bad bucket", func() error { s := good; s.Bucket = "Not_A_Bucket"; return s.Validate() }(), `store bucket "Not_A_Bucket"`},
		{"no secret key", func() error { s := good; s.SecretKey = ""; return s.Validate() }(), "store secret key is required"},
		{"no database user", func() error { d := db; d.User = ""; return d.Validate("database") }(), "database user is required"},
		{"bad port", func() error { d := db; d.Port = 70000; return d.Validate("database") }(), "database port 70000"},
		{"bad sslmode", func() error { d := db; d.SSLMode = "maybe"; return d.Validate("database") }(), `database sslmode "maybe"`},
		{"bad coop", Options{Coop: "Velo_Couriers", Databases: []Database{db}}.Validate(), `coop "Velo_Couriers"`},
		{"bad volume name", Options{Coop: "velo", Databases: []Database{db}, Volumes: []Volume{{Name: "../up", Path: t.TempDir()}}}.Validate(), `volume name "../up"`},
		{"volume not a directory", Options{Coop: "velo", Databases: []Database{db}, Volumes: []Volume{{Name: "up", Path: "/nonexistent/up"}}}.Validate(), "volume up:"},
		{"no database", Options{Coop: "velo"}.Validate(), "database name is required"},
		{"database twice", Options{Coop: "velo", Databases: []Database{db, db}}.Validate(), `database name "coop" is given twice`},
		{"database name unfit for an object", Options{Coop: "velo", Databases: []Database{{Host: "db", Port: 5432, Name: "../coop", User: "coop"}}}.Validate(), `database name "../coop" must be`},
		{"bad id", func() error { _, err := ParseID("yesterday"); return err }(), `backup id "yesterday"`},
		{"bad recipient", func() error { _, err := ParseRecipients("# mine\nage1nope\n"); return err }(), "recipient on line 2"},
		{"bad identity", func() error { _, err := ParseIdentities("AGE-SECRET-KEY-1SECRET"); return err }(), "identity on line 1"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.says) {
			t.Errorf("%s: got %v, want an error saying %q", tc.name, tc.err, tc.says)
		}
	}
	if _, err := ParseIdentities("AGE-SECRET-KEY-1SECRET"); err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Errorf("an identity's error repeats the secret: %v", err)
	}
}

func TestExtractRefusesEntriesOutsideTheVolume(t *testing.T) {
	for _, hdr := range []*tar.Header{
		{Name: "../escaped", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "/etc/escaped", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "a/../../escaped", Typeflag: tar.TypeReg, Mode: 0o644},
	} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		_ = tw.Close()
		parent := t.TempDir()
		dir := filepath.Join(parent, "volume")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := extractTar(&buf, dir); err == nil {
			t.Errorf("%q was unpacked", hdr.Name)
		}
		if _, err := os.Stat(filepath.Join(parent, "escaped")); err == nil {
			t.Errorf("%q escaped the volume", hdr.Name)
		}
	}

	// A link that points out, then a file written through it.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	outside := t.TempDir()
	_ = tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside})
	_ = tw.WriteHeader(&tar.Header{Name: "link/escaped", Typeflag: tar.TypeReg, Mode: 0o644})
	_ = tw.Close()
	if err := extractTar(&buf, t.TempDir()); err == nil {
		t.Error("a file was written through a link out of the volume")
	}
	if _, err := os.Stat(filepath.Join(outside, "escaped")); err == nil {
		t.Error("a file escaped the volume through a link")
	}
}
