package dns

import (
	"context"
	"net"
	"testing"

	"cooperator.dev/cooperator/internal/testenv"
)

func TestCheck(t *testing.T) {
	z, err := testenv.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	defer z.Stop()
	v := Verifier{Resolver: z.Addr}
	ctx := context.Background()
	check := func(host string) Result {
		t.Helper()
		r, err := v.Check(ctx, host, "tok-123")
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	z.SetTXT(RecordName("shop.bakers.org"), "google-site-verification=x", "tok-123")
	if r := check("shop.bakers.org"); r != Verified {
		t.Errorf("right token among others: %v", r)
	}
	z.SetTXT(RecordName("wrong.bakers.org"), "tok-999")
	if r := check("wrong.bakers.org"); r != WrongToken {
		t.Errorf("wrong token: %v", r)
	}
	if r := check("missing.bakers.org"); r != Missing {
		t.Errorf("missing record: %v", r)
	}
	z.SetTXT(RecordName("shop.bakers.org"))
	if r := check("shop.bakers.org"); r != Missing {
		t.Errorf("record removed later: %v", r)
	}
}

func TestCheckReportsAResolverThatDoesNotAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pc.Close() }()
	v := Verifier{Resolver: pc.LocalAddr().String(), Timeout: 200_000_000}
	if _, err := v.Check(context.Background(), "shop.bakers.org", "t"); err == nil {
		t.Error("a silent resolver gave an answer")
	}
}
