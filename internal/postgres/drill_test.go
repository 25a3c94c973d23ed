package postgres

import (
	"strings"
	"testing"
)

func TestDrillDatabaseName(t *testing.T) {
	if got := DrillDatabaseName("coop_bakers"); got != "coop_bakers__drill" {
		t.Errorf("DrillDatabaseName(coop_bakers) = %q, want coop_bakers__drill", got)
	}
	// An app named drill has a database of its own, never the scratch one.
	if app := AppDatabaseName("coop_bakers", "drill"); app == DrillDatabaseName("coop_bakers") {
		t.Errorf("app drill's database %s is the scratch database", app)
	}
	// The longest coop name: cut to PostgreSQL's limit, the same every
	// time, and apart from the coop's own database and its apps'.
	long := "coop_" + strings.Repeat("a", 58)
	got := DrillDatabaseName(long)
	if len(got) != MaxIdentifierLength || got != DrillDatabaseName(long) {
		t.Errorf("DrillDatabaseName of a 63-byte name = %q (%d bytes), want %d bytes, the same every time", got, len(got), MaxIdentifierLength)
	}
	if got == long || got == AppDatabaseName(long, "drill") {
		t.Errorf("the scratch database %s is the coop's or an app's", got)
	}
}
