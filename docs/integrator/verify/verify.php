<?php
// Verify a CTC Engine callback's X-CTC-Signature (PHP 7.0+, no extension needed).
//
//   ctc_verify($secret, $rawBody, $header) -> bool
//
// $rawBody: file_get_contents('php://input'), exactly as received (before json_decode).
// Run as a program (what the engine's tests do): php verify.php SECRET HEADER NOW < body

const CTC_TOLERANCE = 300; // seconds: refuse a signature older or newer than this (replays)

function ctc_verify(string $secret, string $rawBody, string $header, ?int $now = null): bool
{
    $timestamp = null;
    $signatures = [];
    foreach (explode(',', $header) as $part) {
        $kv = explode('=', trim($part), 2);
        if (count($kv) !== 2) {
            continue;
        }
        if ($kv[0] === 't' && ctype_digit($kv[1])) {
            $timestamp = (int) $kv[1];
        } elseif ($kv[0] === 'v1') {
            $signatures[] = $kv[1];
        }
    }
    if ($timestamp === null || !$signatures) {
        return false;
    }
    if (abs(($now ?? time()) - $timestamp) > CTC_TOLERANCE) {
        return false;
    }
    $expected = hash_hmac('sha256', $timestamp . '.' . $rawBody, $secret);
    // several v1 values during a secret rotation: accept when any matches
    foreach ($signatures as $signature) {
        if (hash_equals($expected, $signature)) {
            return true;
        }
    }
    return false;
}

if (PHP_SAPI === 'cli' && realpath($argv[0]) === __FILE__) {
    $ok = ctc_verify($argv[1], file_get_contents('php://stdin'), $argv[2], (int) $argv[3]);
    echo $ok ? "valid\n" : "invalid\n";
    exit($ok ? 0 : 1);
}
