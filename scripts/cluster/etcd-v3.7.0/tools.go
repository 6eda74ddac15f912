//go:build tools

// The etcd server's main package lives in go.etcd.io/etcd/server/v3, whose go.mod has replace
// directives, so `go install` refuses it; this wrapper module builds it instead.
package tools

import _ "go.etcd.io/etcd/server/v3"
