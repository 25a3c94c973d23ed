package secret

import (
	"encoding/base64"
	"testing"
)

func TestToken(t *testing.T) {
	a, err := Token(32)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Token(32)
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 {
		t.Errorf("token %q decodes to %d bytes (%v), want 32", a, len(raw), err)
	}
	if a == b {
		t.Error("two tokens are equal")
	}
}
