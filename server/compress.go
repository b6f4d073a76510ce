package server

// fetchd accepts gzip-compressed requests and answers a gzip-compressed
// call with gzip-compressed results (grpc-go answers in the caller's
// encoding when it knows it). Registering the codec here, rather than
// relying on a dependency that happens to import it, makes that part of the
// server for every program that embeds it.
import _ "google.golang.org/grpc/encoding/gzip"
