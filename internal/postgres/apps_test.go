package postgres

import (
	"strings"
	"testing"
)

func TestAppDatabaseName(t *testing.T) {
	long := "coop_" + strings.Repeat("a", 58)
	cases := []struct {
		name, coop, app, want string
	}{
		{"short", "coop_bakers", "shop", "coop_bakers_shop"},
		{"dashes become underscores", "coop_city_assembly", "loomio-test", "coop_city_assembly_loomio_test"},
		{"exactly 63 bytes is kept", "coop_" + strings.Repeat("b", 53), "abcd", "coop_" + strings.Repeat("b", 53) + "_abcd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := AppDatabaseName(tc.coop, tc.app); got != tc.want {
				t.Errorf("AppDatabaseName(%q, %q) = %q, want %q", tc.coop, tc.app, got, tc.want)
			}
		})
	}

	// Too long: cut to PostgreSQL's limit, the same every time, and
	// different for different apps that share the cut prefix.
	a := AppDatabaseName(long, "decidim")
	b := AppDatabaseName(long, "decidim-two")
	if len(a) != MaxIdentifierLength || len(b) != MaxIdentifierLength {
		t.Errorf("lengths %d and %d, want %d", len(a), len(b), MaxIdentifierLength)
	}
	if a == b {
		t.Errorf("two apps share the database name %s", a)
	}
	if a != AppDatabaseName(long, "decidim") {
		t.Errorf("the shortened name is not deterministic")
	}
	if !strings.HasPrefix(a, long[:40]) {
		t.Errorf("%s does not start with the coop's database name", a)
	}
}
