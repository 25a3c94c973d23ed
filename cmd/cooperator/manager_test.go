package main

import (
	"slices"
	"strings"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	got, err := parseCIDRs(" 10.0.0.0/8, ,192.168.4.0/24")
	if err != nil || !slices.Equal(got, []string{"10.0.0.0/8", "192.168.4.0/24"}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := parseCIDRs("10.0.0.0/8,db.example.org"); err == nil || !strings.Contains(err.Error(), `"db.example.org"`) {
		t.Errorf("a host name was taken for a network: %v", err)
	}
}

func TestParseGateway(t *testing.T) {
	got, err := parseGateway("gateways/public")
	if err != nil || got == nil || got.Namespace != "gateways" || got.Name != "public" {
		t.Errorf("got %+v, %v", got, err)
	}
	if got, err := parseGateway(""); got != nil || err != nil {
		t.Errorf("no flag gave %+v, %v", got, err)
	}
	for _, bad := range []string{"public", "/public", "gateways/", "a/b/c"} {
		if _, err := parseGateway(bad); err == nil || !strings.Contains(err.Error(), "namespace/name") {
			t.Errorf("%q: got %v, want a refusal naming the form", bad, err)
		}
	}
}
