package postgres

import (
	"context"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Kind sorts a server's errors into what a sysadmin can act on.
type Kind int

// The kinds of error.
const (
	// KindOther is any other refusal; retried with backoff.
	KindOther Kind = iota
	// KindUnreachable: no answer (network, timeout, server starting or stopping).
	KindUnreachable
	// KindAuthFailed: the server refused the admin credentials.
	KindAuthFailed
	// KindPermissionDenied: the admin role lacks a privilege.
	KindPermissionDenied
)

// Classify tells what kind of error err is.
func Classify(err error) Kind {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "28P01" || pgErr.Code == "28000":
			return KindAuthFailed
		case pgErr.Code == "42501":
			return KindPermissionDenied
		case pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03" || pgErr.Code[:2] == "08":
			return KindUnreachable
		}
		return KindOther
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connectErr) || errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) {
		return KindUnreachable
	}
	return KindOther
}

// sqlState is the SQLSTATE of a server error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
