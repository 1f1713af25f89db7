// Verify a CTC Engine callback's X-CTC-Signature (Go, standard library only).
//
//	Verify(secret, rawBody, header, now) bool
//
// rawBody: the request body's bytes exactly as received (io.ReadAll(r.Body)).
// Run as a program (what the engine's tests do): go run verify.go SECRET HEADER NOW < body
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const tolerance = 300 // seconds: refuse a signature older or newer than this (replays)

var digits = regexp.MustCompile(`^[0-9]+$`)

func Verify(secret string, rawBody []byte, header string, now time.Time) bool {
	var timestamp int64 = -1
	var signatures []string
	for _, part := range strings.Split(header, ",") {
		key, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		if key == "t" && digits.MatchString(value) {
			timestamp, _ = strconv.ParseInt(value, 10, 64)
		} else if key == "v1" {
			signatures = append(signatures, value)
		}
	}
	if timestamp < 0 || len(signatures) == 0 {
		return false
	}
	if d := now.Unix() - timestamp; d > tolerance || d < -tolerance {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestamp, 10) + "."))
	mac.Write(rawBody)
	expected := []byte(hex.EncodeToString(mac.Sum(nil)))
	// several v1 values during a secret rotation: accept when any matches
	for _, s := range signatures {
		if hmac.Equal(expected, []byte(s)) {
			return true
		}
	}
	return false
}

func main() {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		panic(err)
	}
	now, _ := strconv.ParseInt(os.Args[3], 10, 64)
	if Verify(os.Args[1], body, os.Args[2], time.Unix(now, 0)) {
		fmt.Println("valid")
		return
	}
	fmt.Println("invalid")
	os.Exit(1)
}
