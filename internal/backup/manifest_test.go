package backup

import (
	"fmt"
	"strings"
	"testing"
)

func TestFormatOneManifestIsReadAsOneDatabase(t *testing.T) {
	v1 := `{"formatVersion": 1, "coop": "velo", "id": "20261130T180000Z", "database": "velo_couriers",
  "objects": [{"name": "database.dump.zst", "kind": "database", "size": 3, "sha256": "ab", "rawSize": 9},
              {"name": "volumes/uploads.tar.zst", "kind": "volume", "volume": "uploads", "size": 1, "sha256": "cd"}],
  "tables": {"public.items": 7}}`
	m, err := parseManifest([]byte(v1), "velo", "20261130T180000Z")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := m.DatabaseObject("velo_couriers")
	if !ok || o.Name != "database.dump.zst" || o.Tables["public.items"] != 7 || len(m.DatabaseObjects()) != 1 {
		t.Errorf("format 1 read as %+v", m.Objects)
	}
}

func TestUnknownManifestFormatIsRefusedNamingIt(t *testing.T) {
	for version, says := range map[int]string{3: "format version 3, and this runner reads 1 and 2: a newer runner wrote it", 0: "format version 0"} {
		data := fmt.Sprintf(`{"formatVersion": %d, "coop": "velo", "id": "20261130T180000Z", "objects": []}`, version)
		if _, err := parseManifest([]byte(data), "velo", "20261130T180000Z"); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("format %d gave %v, want an error saying %q", version, err, says)
		}
	}
}

func TestManifestNamingADatabaseTwiceIsRefused(t *testing.T) {
	data := `{"formatVersion": 2, "coop": "velo", "id": "20261130T180000Z", "objects": [
  {"name": "databases/a.dump.zst", "kind": "database", "database": "a"},
  {"name": "databases/b.dump.zst", "kind": "database", "database": "a"}]}`
	if _, err := parseManifest([]byte(data), "velo", "20261130T180000Z"); err == nil || !strings.Contains(err.Error(), "databases/b.dump.zst") {
		t.Errorf("got %v", err)
	}
}
