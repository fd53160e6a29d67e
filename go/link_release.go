//go:build shardkit_release && !shardkit_system

package shardkit

// Built with `-tags shardkit_release`: links the optimised static library
// from `cargo build --release -p shardkit-ffi`.

// #cgo LDFLAGS: ${SRCDIR}/../target/release/libshardkit.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
