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
