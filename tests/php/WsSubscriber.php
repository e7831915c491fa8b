<?php
/*
 * A WebSocket subscriber on a raw TCP socket: what a page would receive,
 * frame by frame, with nothing decoded or re-encoded on the way (an
 * envelope is compared byte for byte).
 */

declare(strict_types=1);

final class WsSubscriber
{
    private const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
    private $s;
    private string $buf = '';

    /** Opens ws://127.0.0.1:$port/ws?$query and checks the upgrade (101, the accept key). */
    public function __construct(int $port, string $query)
    {
        $this->s = stream_socket_client("tcp://127.0.0.1:$port", $errno, $errstr, 5.0);
        if ($this->s === false) {
            throw new RuntimeException("connect to 127.0.0.1:$port: $errstr");
        }
        $key = base64_encode(random_bytes(16));
        fwrite($this->s, "GET /ws?$query HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nUpgrade: websocket\r\n" .
            "Connection: Upgrade\r\nSec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n\r\n");
        while (($end = strpos($this->buf, "\r\n\r\n")) === false) {
            $this->fill(5.0);
        }
        $head = substr($this->buf, 0, $end);
        $this->buf = substr($this->buf, $end + 4);
        $accept = base64_encode(sha1($key . self::GUID, true));
        if (!str_starts_with($head, 'HTTP/1.1 101 ') || !str_contains($head, "\r\nSec-WebSocket-Accept: $accept")) {
            throw new RuntimeException("upgrade refused:\n$head");
        }
    }

    /** The next text frame's payload (pings are skipped); fails on a close. */
    public function text(float $timeout = 5.0): string
    {
        for (;;) {
            [$op, $payload] = $this->frame($timeout);
            if ($op === 0x1) {
                return $payload;
            }
            if ($op === 0x8) {
                throw new RuntimeException('closed with ' . self::code($payload) . ' while waiting for a message');
            }
        }
    }

    /** The close code of the next close frame (text frames before it are skipped). */
    public function closeCode(float $timeout = 5.0): int
    {
        for (;;) {
            [$op, $payload] = $this->frame($timeout);
            if ($op === 0x8) {
                return self::code($payload);
            }
        }
    }

    public function close(): void
    {
        if (is_resource($this->s)) {
            fclose($this->s);
        }
    }

    /** @return array{0: int, 1: string} opcode, payload of the next server frame (unmasked) */
    private function frame(float $timeout): array
    {
        for (;;) {
            if (strlen($this->buf) >= 2) {
                $n = ord($this->buf[1]) & 0x7F;
                $off = 2;
                if ($n === 126 && strlen($this->buf) >= 4) {
                    [$n, $off] = [unpack('n', $this->buf, 2)[1], 4];
                } elseif ($n === 127 && strlen($this->buf) >= 10) {
                    [$n, $off] = [unpack('J', $this->buf, 2)[1], 10];
                }
                if ($n < 126 || $off > 2) {
                    if (strlen($this->buf) >= $off + $n) {
                        $frame = [ord($this->buf[0]) & 0x0F, substr($this->buf, $off, $n)];
                        $this->buf = substr($this->buf, $off + $n);
                        return $frame;
                    }
                }
            }
            $this->fill($timeout);
        }
    }

    private function fill(float $timeout): void
    {
        $r = [$this->s];
        $w = $e = null;
        if (stream_select($r, $w, $e, (int)$timeout, (int)(fmod($timeout, 1.0) * 1e6)) !== 1) {
            throw new RuntimeException("nothing from ws-server within {$timeout}s");
        }
        $chunk = fread($this->s, 65536);
        if ($chunk === '' || $chunk === false) {
            throw new RuntimeException('ws-server closed the TCP connection');
        }
        $this->buf .= $chunk;
    }

    private static function code(string $payload): int
    {
        return strlen($payload) >= 2 ? unpack('n', $payload)[1] : 1005;
    }
}
