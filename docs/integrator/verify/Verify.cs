// Verify a CTC Engine callback's X-CTC-Signature (C#, .NET Framework 4.5+ / .NET 5+ / Mono).
//
//   CtcSignature.Verify(secret, rawBody, header, nowSeconds) -> bool
//
// rawBody: the request body's bytes exactly as received (read Request.Body before any
// model binding). Run as a program (what the engine's tests do):
//   mcs Verify.cs && mono Verify.exe SECRET HEADER NOW < body
using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;
using System.Text;

public static class CtcSignature
{
    const long Tolerance = 300; // seconds: refuse older or newer signatures (replays)

    public static bool Verify(string secret, byte[] rawBody, string header, long now)
    {
        long? timestamp = null;
        var signatures = new List<string>();
        foreach (var part in header.Split(','))
        {
            var kv = part.Trim().Split(new[] { '=' }, 2);
            if (kv.Length != 2) continue;
            long t;
            if (kv[0] == "t" && kv[1].Length > 0 && long.TryParse(kv[1], out t) && t >= 0) timestamp = t;
            else if (kv[0] == "v1") signatures.Add(kv[1]);
        }
        if (timestamp == null || signatures.Count == 0) return false;
        if (Math.Abs(now - timestamp.Value) > Tolerance) return false;
        byte[] prefix = Encoding.UTF8.GetBytes(timestamp.Value + ".");
        var message = new byte[prefix.Length + rawBody.Length];
        Buffer.BlockCopy(prefix, 0, message, 0, prefix.Length);
        Buffer.BlockCopy(rawBody, 0, message, prefix.Length, rawBody.Length);
        string expected;
        using (var mac = new HMACSHA256(Encoding.UTF8.GetBytes(secret)))
        {
            expected = BitConverter.ToString(mac.ComputeHash(message)).Replace("-", "").ToLowerInvariant();
        }
        // several v1 values during a secret rotation: accept when any matches
        foreach (var s in signatures)
        {
            if (FixedTimeEquals(expected, s)) return true;
        }
        return false;
    }

    static bool FixedTimeEquals(string a, string b)
    {
        if (a.Length != b.Length) return false;
        int diff = 0;
        for (int i = 0; i < a.Length; i++) diff |= a[i] ^ b[i];
        return diff == 0;
    }

    public static int Main(string[] args)
    {
        var body = new MemoryStream();
        Console.OpenStandardInput().CopyTo(body);
        bool ok = Verify(args[0], body.ToArray(), args[1], long.Parse(args[2]));
        Console.WriteLine(ok ? "valid" : "invalid");
        return ok ? 0 : 1;
    }
}
