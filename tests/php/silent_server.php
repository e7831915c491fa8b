<?php
/*
 * A stand-in for ws-server's publish socket that leaves the first request
 * unanswered, for the PHP client's timeout test. Usage:
 *   php silent_server.php SOCKET [stale]
 * Prints "ready" once listening, then one line per event ("accept N",
 * "request N ID", "eof N"). Every later request is answered, on whatever
 * connection it came, by an ACK with message id "fresh"; just before that
 * a "late" answer to the same request id goes out on the first connection,
 * the one the client should have closed at its timeout: a client that
 * reused it reads "late". Exits on SIGTERM, at the latest after 30 s.
 * With "stale", every request is answered at once, but right after an
 * answer to the id before it (message id "stale"), as a request that wrote
 * and died leaves one on a persistent connection.
 */

declare(strict_types=1);

$path = $argv[1];
$stale = ($argv[2] ?? '') === 'stale';
$server = stream_socket_server("unix://$path", $errno, $errstr);
if ($server === false) {
    fwrite(STDERR, "listen $path: $errstr\n");
    exit(1);
}
echo "ready\n";

function ack(int $id, string $msgId): string
{
    $body = pack('N', 0) . chr(strlen($msgId)) . $msgId;
    return pack('NCN', 5 + strlen($body), 0x81, $id) . $body;
}

$conns = [];      // connection number => stream
$bufs = [];
$first = null;    // number of the connection that carried the first request
$requests = 0;
$deadline = microtime(true) + 30;
while (microtime(true) < $deadline) {
    $r = array_merge([$server], array_values($conns));
    $w = $e = null;
    if (@stream_select($r, $w, $e, 1) < 1) {
        continue;
    }
    foreach ($r as $s) {
        if ($s === $server) {
            $c = stream_socket_accept($server);
            $n = count($bufs) + 1;
            $conns[$n] = $c;
            $bufs[$n] = '';
            echo "accept $n\n";
            continue;
        }
        $n = array_search($s, $conns, true);
        $chunk = fread($s, 65536);
        if ($chunk === '' || $chunk === false) {
            echo "eof $n\n";
            fclose($s);
            unset($conns[$n]);
            continue;
        }
        $bufs[$n] .= $chunk;
        while (strlen($bufs[$n]) >= 4 && strlen($bufs[$n]) >= 4 + unpack('N', $bufs[$n])[1]) {
            $len = unpack('N', $bufs[$n])[1];
            $id = unpack('N', $bufs[$n], 5)[1];
            $bufs[$n] = substr($bufs[$n], 4 + $len);
            echo "request $n $id\n";
            if ($stale) {
                fwrite($conns[$n], ack(($id + 0xFFFFFFFD) % 0xFFFFFFFF + 1, 'stale') . ack($id, 'fresh'));
                continue;
            }
            if (++$requests === 1) {
                $first = $n;
                continue;
            }
            if (isset($conns[$first])) {
                @fwrite($conns[$first], ack($id, 'late'));
            }
            fwrite($conns[$n], ack($id, 'fresh'));
        }
    }
}
