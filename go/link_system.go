//go:build shardkit_system

package shardkit

// Built with `-tags shardkit_system`: links libshardkit from the linker's
// search path, for a library installed outside this repository. Point the
// toolchain at it with CGO_LDFLAGS="-L/path/to/lib" (and CGO_CFLAGS="-I..."
// when the header is not the one in ../include).

// #cgo LDFLAGS: -lshardkit -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
