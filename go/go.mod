module github.com/shardkit/shardkit/go

go 1.24
