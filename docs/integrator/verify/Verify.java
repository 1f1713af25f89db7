// Verify a CTC Engine callback's X-CTC-Signature (Java 11+, JDK only).
//
//   Verify.verify(secret, rawBody, header, nowSeconds) -> boolean
//
// rawBody: the request body's bytes exactly as received (before any JSON parsing).
// Run as a program (what the engine's tests do):
//   javac Verify.java && java Verify SECRET HEADER NOW < body
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class Verify {
    static final long TOLERANCE = 300; // seconds: refuse older or newer signatures (replays)

    public static boolean verify(String secret, byte[] rawBody, String header, long now) {
        Long timestamp = null;
        List<String> signatures = new ArrayList<>();
        for (String part : header.split(",")) {
            String[] kv = part.trim().split("=", 2);
            if (kv.length != 2) continue;
            if (kv[0].equals("t") && kv[1].matches("\\d+")) timestamp = Long.parseLong(kv[1]);
            else if (kv[0].equals("v1")) signatures.add(kv[1]);
        }
        if (timestamp == null || signatures.isEmpty()) return false;
        if (Math.abs(now - timestamp) > TOLERANCE) return false;
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            mac.update((timestamp + ".").getBytes(StandardCharsets.UTF_8));
            byte[] digest = mac.doFinal(rawBody);
            StringBuilder hex = new StringBuilder();
            for (byte b : digest) hex.append(String.format("%02x", b));
            byte[] expected = hex.toString().getBytes(StandardCharsets.US_ASCII);
            // several v1 values during a secret rotation: accept when any matches
            for (String s : signatures) {
                if (MessageDigest.isEqual(expected, s.getBytes(StandardCharsets.US_ASCII))) return true;
            }
            return false;
        } catch (java.security.GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    public static void main(String[] args) throws IOException {
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        System.in.transferTo(body);
        boolean ok = verify(args[0], body.toByteArray(), args[1], Long.parseLong(args[2]));
        System.out.println(ok ? "valid" : "invalid");
        System.exit(ok ? 0 : 1);
    }
}
