// Package specs builds the desired state of a cooperative's children as
// server-side apply configurations. Every function here is pure: no client,
// no clock, no randomness, so the same inputs always give the same objects
// and the builders are tested without a cluster.
package specs
