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

func TestParseDBMap(t *testing.T) {
	got, err := parseDBMap([]string{"coop_a=coop_b", "coop_a_forum=coop_b_forum"})
	if err != nil || got["coop_a"] != "coop_b" || got["coop_a_forum"] != "coop_b_forum" || len(got) != 2 {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range [][]string{{"coop_a"}, {"=coop_b"}, {"coop_a="}, {"coop_a=x", "coop_a=y"}} {
		if _, err := parseDBMap(bad); err == nil || !strings.Contains(err.Error(), "--db-map") {
			t.Errorf("%q gave %v", bad, err)
		}
	}
}

func TestRestoreRefusesDatabaseFlagsWithoutDatabases(t *testing.T) {
	for _, args := range [][]string{
		{"--database=false", "--volume", "/data/up", "--db-name", "coop_a"},
		{"--database=false", "--volume", "/data/up", "--db-map", "coop_a=coop_b"},
	} {
		if err := runRestore(args); err == nil || !strings.Contains(err.Error(), "--database=false restores no database") {
			t.Errorf("%q gave %v", args, err)
		}
	}
}

func TestBackupRefusesANoDatabase(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s")
	t.Setenv("PGDATABASE", "")
	t.Setenv("GOMEMLIMIT", "") // keeps runBackup from limiting the test's memory
	err := runBackup([]string{"--s3-endpoint", "s3.example.org:443", "--s3-bucket", "backups", "--db-host", "db", "--db-user", "coop", "--coop", "velo"})
	if err == nil || !strings.Contains(err.Error(), "--db-name: database name is required") {
		t.Errorf("no database gave %v", err)
	}
	err = runBackup([]string{"--s3-endpoint", "s3.example.org:443", "--s3-bucket", "backups", "--db-host", "db", "--db-user", "coop", "--coop", "velo",
		"--db-name", "coop_velo", "--db-name", "coop_velo"})
	if err == nil || !strings.Contains(err.Error(), `--db-name: database name "coop_velo" is given twice`) {
		t.Errorf("a database given twice gave %v", err)
	}
}
