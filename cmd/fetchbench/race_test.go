//go:build race

package main

// With the race detector on, build fetchd with it too: the other packages'
// race builds are then in the cache, and fetchd is checked as well.
func init() { fetchdBuildFlags = []string{"-race"} }
