package main

import (
	"strings"
	"testing"
)

func TestParseVolumes(t *testing.T) {
	got := parseVolumes([]string{"uploads=/data/up", "/srv/config/"})
	if len(got) != 2 || got[0].Name != "uploads" || got[0].Path != "/data/up" || got[1].Name != "config" || got[1].Path != "/srv/config/" {
		t.Errorf("got %+v", got)
	}
}

func TestParseApps(t *testing.T) {
	got, err := parseApps([]string{"nextcloud=29.0.1"})
	if err != nil || got["nextcloud"] != "29.0.1" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := parseApps([]string{"nextcloud"}); err == nil || !strings.Contains(err.Error(), `--app "nextcloud"`) {
		t.Errorf("an app without a version gave %v", err)
	}
}

func TestStoreKeysComeFromTheEnvironment(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	if err := runBackup([]string{"--s3-endpoint", "s3.example.org:443", "--s3-bucket", "backups"}); err == nil || !strings.Contains(err.Error(), "$AWS_ACCESS_KEY_ID") {
		t.Errorf("a missing key gave %v", err)
	}
}
