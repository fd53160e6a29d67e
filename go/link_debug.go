//go:build !shardkit_release && !shardkit_system

package shardkit

// The default links the debug static library that `cargo build -p
// shardkit-ffi` leaves in the repository, so `go test` works right after a
// plain workspace build. Benchmarks and deployments pick a release build with
// `-tags shardkit_release` (see doc.go).

// #cgo LDFLAGS: ${SRCDIR}/../target/debug/libshardkit.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
