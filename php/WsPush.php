<?php
/*
 * WsPush — the PHP client of ws-server's publish socket: publish, disconnect
 * a user, sign subscribe tokens. One file, no dependencies, PHP >= 8.1.
 * Usage, exceptions and the permissions it needs: docs/php.md, "The PHP
 * client". The protocol it speaks: docs/protocol.md, "The publish socket
 * protocol" (the C codec is shared/ipc.c).
 *
 * One connection per socket path per PHP process, shared by every WsPush
 * object and, being a persistent stream, kept across the requests a
 * php-fpm worker serves. Each call writes one request and reads its one
 * answer before returning, so the connection is idle between calls. When a
 * call fails half-way (timeout, broken connection, an answer that does not
 * fit) the connection is closed: a late answer on it would otherwise be
 * read as the next call's. An idle connection that has become readable
 * (ws-server closed it, or stray bytes) is replaced before use, so a
 * ws-server restart between two calls costs nothing.
 */

declare(strict_types=1);

/** Any failure of a call to ws-server; the three below say which. */
class WsPushException extends RuntimeException
{
}

/**
 * ws-server answered with an error: nothing was published. getCode() is
 * the protocol's error code, one of the ERR_ constants.
 */
class WsPushRefusedException extends WsPushException
{
    public const ERR_MALFORMED = 1;    // the request does not parse
    public const ERR_BAD_CHANNEL = 2;  // invalid channel name, or one listed twice
    public const ERR_TOO_BIG = 3;      // data over max_message_bytes
    public const ERR_NOT_ALLOWED = 4;  // peer uid/gid not in publish_allow_uids/gids
    public const ERR_BAD_DATA = 5;     // data is not one JSON value
    public const ERR_INTERNAL = 6;     // out of memory in ws-server
    public const ERR_UNAVAILABLE = 7;  // engine = redis: Redis unreachable, nothing published
    public const ERR_TIMEOUT = 8;      // engine = redis: Redis silent; may or may not be published
}

/**
 * No connection to ws-server (socket missing, nobody listening, permission
 * denied), or it broke before the answer: then the message may or may not
 * have been published.
 */
class WsPushUnreachableException extends WsPushException
{
}

/** No answer within the timeout; the message may still be published. */
class WsPushTimeoutException extends WsPushException
{
}

final class WsPush
{
    private const PUBLISH = 0x01;
    private const DISCONNECT = 0x02;
    private const ACK = 0x81;
    private const DISCONNECTED = 0x82;
    private const ERROR = 0xFF;

    private const MAX_CHANNELS = 32;        // per publish and per token
    private const MAX_NAME = 255;           // bytes of a channel or user on the wire
    /* The longest answer's length field: type, id, then an ACK's u32 and
     * u8-counted id, or an ERROR's u16 and u8-counted text. */
    private const MAX_ANSWER = 1 + 4 + 4 + 1 + 255;
    private const SUN_PATH_MAX = 107;       // sun_path, less its NUL
    private const SECRET_MIN = 32;          // what ws-server accepts (shared/cfg.c)
    private const SECRET_MAX = 256;
    /* Unicode as it is: U+2028 and U+2029 too, which PHP escapes by
     * default for JavaScript source (JSON is not). */
    private const JSON_FLAGS = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_LINE_TERMINATORS |
                               JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR;

    /** @var array<string, array{0: resource, 1: int}> socket path => [stream, owner pid] */
    private static array $links = [];
    private static ?int $nextId = null;

    private string $socketPath;
    private float $timeout;
    private ?string $secret = null;
    private ?string $secretFile = null;     // fromIni: read on first subscribeToken()

    /**
     * @param string      $socketPath ws-server's publish_socket
     * @param float       $timeout    seconds for a whole call (connect, send, answer)
     * @param string|null $secret     the shared HMAC secret, as in secret_file (one
     *                                trailing newline is ignored, as ws-server does);
     *                                needed only by subscribeToken()
     */
    public function __construct(
        string $socketPath = '/run/wspush/publish.sock',
        float $timeout = 5.0,
        ?string $secret = null
    ) {
        if ($socketPath === '' || strlen($socketPath) > self::SUN_PATH_MAX || str_contains($socketPath, "\0")) {
            throw new InvalidArgumentException('socket path must be 1..' . self::SUN_PATH_MAX . ' bytes without NUL');
        }
        if (!($timeout > 0) || !is_finite($timeout)) {
            throw new InvalidArgumentException('timeout must be a positive number of seconds');
        }
        $this->socketPath = $socketPath;
        $this->timeout = $timeout;
        if ($secret !== null) {
            $this->secret = self::checkSecret($secret, 'secret');
        }
    }

    /**
     * A client configured like ws-server and fcgi-publisher: [wspush]
     * publish_socket (default /run/wspush/publish.sock) and secret_file
     * (relative to the ini's directory), read with the same syntax rules.
     * The secret file is read on the first subscribeToken() only, so a
     * process that only publishes needs no access to it.
     */
    public static function fromIni(string $iniPath, float $timeout = 5.0): self
    {
        $text = @file_get_contents($iniPath);
        if ($text === false) {
            throw new WsPushException("$iniPath: cannot read: " . self::lastError());
        }
        $keys = self::iniWspushKeys($iniPath, $text);
        $client = new self($keys['publish_socket'] ?? '/run/wspush/publish.sock', $timeout);
        if (isset($keys['secret_file'])) {
            $file = $keys['secret_file'];
            $client->secretFile = $file[0] === '/' ? $file : dirname($iniPath) . '/' . $file;
        }
        return $client;
    }

    /**
     * Publishes a PHP value, JSON-encoded (unicode, U+2028/U+2029 and
     * slashes unescaped, 1.0 stays 1.0). $channels is one channel name or
     * a list of 1..32. Returns once ws-server holds the message: its id
     * and how many deliveries were queued.
     *
     * @return array{id: string, subscribers: int}
     * @throws JsonException for a value JSON cannot encode (nothing sent)
     */
    public function publish(string|array $channels, mixed $data): array
    {
        return $this->publishJson($channels, json_encode($data, self::JSON_FLAGS));
    }

    /**
     * Publishes raw JSON, passed to subscribers byte for byte: the way to
     * send integers beyond PHP's range, or JSON made elsewhere. ws-server
     * refuses anything but exactly one JSON value (ERR_BAD_DATA).
     *
     * @return array{id: string, subscribers: int}
     */
    public function publishJson(string|array $channels, string $json): array
    {
        $names = is_string($channels) ? [$channels] : array_values($channels);
        if (count($names) < 1 || count($names) > self::MAX_CHANNELS) {
            throw new InvalidArgumentException('publish needs 1..' . self::MAX_CHANNELS . ' channels');
        }
        $body = chr(count($names));
        foreach ($names as $name) {
            $body .= self::counted($name, 'channel name');
        }
        /* The u32 length field counts type, id and the whole body. */
        if (strlen($json) > 0xFFFFFFFF - 5 - strlen($body) - 4) {
            throw new InvalidArgumentException('data does not fit a publish frame');
        }
        $body .= pack('N', strlen($json)) . $json;

        $answer = $this->call(self::PUBLISH, $body, self::ACK);
        /* u32 subscribers, u8 len, message id */
        if (strlen($answer) < 5 || strlen($answer) !== 5 + ord($answer[4])) {
            $this->drop();
            throw new WsPushException('ws-server sent an ACK that does not parse');
        }
        return ['id' => substr($answer, 5), 'subscribers' => unpack('N', $answer)[1]];
    }

    /**
     * Closes every WebSocket connection whose token's sub is $user (close
     * code 4401) and revokes the user's tokens issued until now.
     *
     * @return array{connections: int} the connections closed
     */
    public function disconnect(string $user): array
    {
        $answer = $this->call(self::DISCONNECT, self::counted($user, 'user'), self::DISCONNECTED);
        if (strlen($answer) !== 4) {
            $this->drop();
            throw new WsPushException('ws-server sent a DISCONNECTED answer that does not parse');
        }
        return ['connections' => unpack('N', $answer)[1]];
    }

    /**
     * A subscribe token for the WebSocket URL, as fcgi-publisher's
     * GET /push/token signs it: HS256 with claims channels, exp, iat,
     * scope "subscribe" and sub. $channels are names or patterns (1..32);
     * $ttl (seconds) must be within ws-server's max_token_lifetime.
     */
    public function subscribeToken(string $user, array $channels, int $ttl): string
    {
        self::checkUser($user);
        $channels = array_values($channels);
        if (count($channels) < 1 || count($channels) > self::MAX_CHANNELS) {
            throw new InvalidArgumentException('a token needs 1..' . self::MAX_CHANNELS . ' channels');
        }
        foreach ($channels as $c) {
            if (!is_string($c) || $c === '' || str_contains($c, "\0")) {
                throw new InvalidArgumentException('a token channel must be a non-empty string without NUL');
            }
        }
        if ($ttl < 1) {
            throw new InvalidArgumentException('ttl must be at least one second');
        }
        $iat = time();
        return self::sign($this->secret(),
            ['channels' => $channels, 'exp' => $iat + $ttl, 'iat' => $iat, 'scope' => 'subscribe', 'sub' => $user]);
    }

    /**
     * A login token for fcgi-publisher's [publisher] auth = jwt (the
     * cookie named by jwt_cookie): HS256 with claims exp, iat and sub, no
     * channels and no scope, so it names the user and nothing else. The
     * site sets it as a cookie at login (docs/php.md, under Apache).
     */
    public function loginToken(string $user, int $ttl): string
    {
        self::checkUser($user);
        if ($ttl < 1) {
            throw new InvalidArgumentException('ttl must be at least one second');
        }
        $iat = time();
        return self::sign($this->secret(), ['exp' => $iat + $ttl, 'iat' => $iat, 'sub' => $user]);
    }

    /**
     * The token's bytes are those of shared/token.c's tok_issue (libjwt):
     * header {"alg":"HS256","typ":"JWT"}, claims with sorted keys (the
     * callers list them sorted), compact.
     *
     * @param array<string, mixed> $claims
     */
    private static function sign(string $key, array $claims): string
    {
        $header = self::base64url('{"alg":"HS256","typ":"JWT"}');
        $body = self::base64url(json_encode($claims, self::JSON_FLAGS));
        $mac = hash_hmac('sha256', "$header.$body", $key, true);
        return "$header.$body." . self::base64url($mac);
    }

    /** A token's sub: what ws-server and fcgi-publisher accept as a user. */
    private static function checkUser(string $user): void
    {
        if ($user === '' || strlen($user) > self::MAX_NAME || str_contains($user, "\0")) {
            throw new InvalidArgumentException('user must be 1..' . self::MAX_NAME . ' bytes without NUL');
        }
    }

    private static function base64url(string $bytes): string
    {
        return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
    }

    private function secret(): string
    {
        if ($this->secret === null && $this->secretFile !== null) {
            $raw = @file_get_contents($this->secretFile);
            if ($raw === false) {
                throw new WsPushException("secret_file $this->secretFile: cannot read: " . self::lastError() .
                    ' (the PHP user needs read access to it, see docs/php.md)');
            }
            $this->secret = self::checkSecret($raw, "secret_file $this->secretFile");
        }
        if ($this->secret === null) {
            throw new LogicException('subscribeToken() needs the secret: pass it to the constructor or use fromIni()');
        }
        return $this->secret;
    }

    /** The secret as ws-server loads it: one trailing \n or \r\n dropped, 32..256 bytes. */
    private static function checkSecret(string $raw, string $what): string
    {
        if (str_ends_with($raw, "\n")) {
            $raw = substr($raw, 0, -1);
            if (str_ends_with($raw, "\r")) {
                $raw = substr($raw, 0, -1);
            }
        }
        if (strlen($raw) < self::SECRET_MIN || strlen($raw) > self::SECRET_MAX) {
            throw new InvalidArgumentException("$what: " . strlen($raw) . ' bytes; ws-server needs ' .
                self::SECRET_MIN . '..' . self::SECRET_MAX);
        }
        return $raw;
    }

    /** u8 length + bytes, for a channel or a user. */
    private static function counted(mixed $s, string $what): string
    {
        if (!is_string($s) || $s === '' || strlen($s) > self::MAX_NAME) {
            throw new InvalidArgumentException("$what must be a string of 1.." . self::MAX_NAME . ' bytes');
        }
        return chr(strlen($s)) . $s;
    }

    /**
     * [wspush] publish_socket and secret_file of an ini file, read as
     * shared/cfg.c reads it through inih: "key = value" (or ':'), comment
     * lines starting with ; or #, " ;" starting a comment after a value,
     * a key set twice is an error.
     *
     * @return array<string, string>
     */
    private static function iniWspushKeys(string $path, string $text): array
    {
        $section = '';
        $found = [];
        $text = str_starts_with($text, "\xEF\xBB\xBF") ? substr($text, 3) : $text;
        foreach (preg_split('/\r?\n/', $text) as $i => $line) {
            $line = trim($line);
            if ($line === '' || $line[0] === ';' || $line[0] === '#') {
                continue;
            }
            if ($line[0] === '[') {
                $end = strpos($line, ']');
                $section = $end === false ? $section : substr($line, 1, $end - 1);
                continue;
            }
            $eq = strcspn($line, '=:');
            if ($section !== 'wspush' || $eq === strlen($line)) {
                continue;
            }
            $key = rtrim(substr($line, 0, $eq));
            if ($key !== 'publish_socket' && $key !== 'secret_file') {
                continue;
            }
            $value = substr($line, $eq + 1);
            if (preg_match('/\s;/', $value, $m, PREG_OFFSET_CAPTURE)) {
                $value = substr($value, 0, $m[0][1]);
            }
            if (isset($found[$key])) {
                throw new WsPushException("$path:" . ($i + 1) . ": key '$key' set again");
            }
            $found[$key] = trim($value);
            if ($found[$key] === '') {
                throw new WsPushException("$path:" . ($i + 1) . ": key '$key' is empty");
            }
        }
        return $found;
    }

    /**
     * Sends one request and returns the body of its answer, which must be
     * of type $expect (or an ERROR, thrown as WsPushRefusedException).
     */
    private function call(int $type, string $body, int $expect): string
    {
        $deadline = hrtime(true) + (int)($this->timeout * 1e9);
        $s = $this->link($deadline);
        $id = self::nextId();
        try {
            self::writeAll($s, pack('NCN', 5 + strlen($body), $type, $id) . $body, $deadline);
            $len = unpack('N', self::readExact($s, 4, $deadline))[1];
            if ($len < 5 || $len > self::MAX_ANSWER) {
                throw new WsPushException("ws-server sent an answer of length $len");
            }
            $frame = self::readExact($s, $len, $deadline);
        } catch (WsPushException $e) {
            $this->drop();
            throw $e;
        }
        ['t' => $t, 'id' => $got] = unpack('Ct/Nid', $frame);
        if ($got !== $id) {
            $this->drop();
            throw new WsPushException("ws-server answered request $got, expected $id");
        }
        $answer = substr($frame, 5);
        if ($t === self::ERROR) {
            $this->refused($answer);
        }
        if ($t !== $expect) {
            $this->drop();
            throw new WsPushException(sprintf('ws-server sent answer type 0x%02x, expected 0x%02x', $t, $expect));
        }
        return $answer;
    }

    private function refused(string $answer): never
    {
        /* u16 code (never 0), u8 len, text */
        if (strlen($answer) < 3 || strlen($answer) !== 3 + ord($answer[2]) || unpack('n', $answer)[1] === 0) {
            $this->drop();
            throw new WsPushException('ws-server sent an ERROR that does not parse');
        }
        $code = unpack('n', $answer)[1];
        if ($code === WsPushRefusedException::ERR_MALFORMED) {
            $this->drop();   // ws-server closes the connection after it
        }
        throw new WsPushRefusedException("ws-server refused: " . substr($answer, 3) . " (error $code)", $code);
    }

    /** The process's connection to this socket, opened if needed. */
    private function link(int $deadline)
    {
        $link = self::$links[$this->socketPath] ?? null;
        if ($link !== null) {
            [$s, $pid] = $link;
            if ($pid === getmypid() && self::idleAndOpen($s)) {
                return $s;
            }
            /* Closed by ws-server, stray bytes, or inherited through fork()
             * (closing the child's copy leaves the parent's connection be). */
            $this->drop();
        }
        /* A persistent stream may come back from an earlier request of
         * this php-fpm worker, and then face the same check: one more try
         * gets a new connection if it fails. */
        for ($try = 0; ; $try++) {
            $s = $this->connect($deadline);
            if (self::idleAndOpen($s)) {
                break;
            }
            fclose($s);
            if ($try > 0) {
                throw new WsPushUnreachableException("connection to ws-server at $this->socketPath closed at once");
            }
        }
        stream_set_blocking($s, false);
        stream_set_read_buffer($s, 0);
        stream_set_write_buffer($s, 0);
        self::$links[$this->socketPath] = [$s, getmypid()];
        return $s;
    }

    private function connect(int $deadline)
    {
        $errno = 0;
        $errstr = '';
        $s = @stream_socket_client(
            'unix://' . $this->socketPath,
            $errno,
            $errstr,
            self::secondsLeft($deadline),
            STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT
        );
        if ($s !== false) {
            return $s;
        }
        $why = "cannot connect to ws-server at $this->socketPath: " . ($errstr !== '' ? $errstr : "error $errno");
        if ($errno === 110) {   // ETIMEDOUT
            throw new WsPushTimeoutException($why);
        }
        if ($errno === 13) {    // EACCES
            $why .= ' (publish_socket_mode/publish_socket_group must let this PHP user in, see docs/php.md)';
        }
        throw new WsPushUnreachableException($why);
    }

    /** Nothing to read: neither a close by ws-server nor stray bytes. */
    private static function idleAndOpen($s): bool
    {
        $r = [$s];
        $w = $e = null;
        return is_resource($s) && @stream_select($r, $w, $e, 0, 0) === 0;
    }

    private function drop(): void
    {
        $link = self::$links[$this->socketPath] ?? null;
        unset(self::$links[$this->socketPath]);
        if ($link !== null && is_resource($link[0])) {
            fclose($link[0]);   // on a persistent stream this closes it too
        }
    }

    private static function nextId(): int
    {
        /* A random start per process: an answer left over from another
         * process's or request's use of a connection cannot match. */
        self::$nextId = self::$nextId === null ? random_int(1, 0xFFFFFFFF) : (self::$nextId % 0xFFFFFFFF) + 1;
        return self::$nextId;
    }

    private static function writeAll($s, string $bytes, int $deadline): void
    {
        $off = 0;
        $len = strlen($bytes);
        while ($off < $len) {
            $n = @fwrite($s, $off === 0 && $len <= 65536 ? $bytes : substr($bytes, $off, 65536));
            if ($n === false) {
                throw new WsPushUnreachableException('connection to ws-server broke while sending: ' . self::lastError() .
                    ($off > 0 ? ' (the message may or may not have been published)' : ''));
            }
            $off += $n;
            if ($n === 0) {
                self::wait($s, false, $deadline, 'sending to ws-server');
            }
        }
    }

    private static function readExact($s, int $n, int $deadline): string
    {
        $buf = '';
        while (strlen($buf) < $n) {
            $chunk = @fread($s, $n - strlen($buf));
            if ($chunk !== false && $chunk !== '') {
                $buf .= $chunk;
                continue;
            }
            if (feof($s) || $chunk === false) {
                throw new WsPushUnreachableException('ws-server closed the connection before its answer ' .
                    '(the message may or may not have been published)');
            }
            self::wait($s, true, $deadline, 'waiting for the answer of ws-server');
        }
        return $buf;
    }

    /** Waits until $s is readable (or writable), or throws at the deadline. */
    private static function wait($s, bool $read, int $deadline, string $doing): void
    {
        for (;;) {
            $left = $deadline - hrtime(true);
            if ($left <= 0) {
                throw new WsPushTimeoutException("timed out $doing (the message may still be published)");
            }
            $r = $read ? [$s] : null;
            $w = $read ? null : [$s];
            $e = null;
            /* false: interrupted by a signal; the deadline bounds the retries. */
            if (@stream_select($r, $w, $e, intdiv($left, 1000000000), intdiv($left % 1000000000, 1000)) > 0) {
                return;
            }
        }
    }

    private static function secondsLeft(int $deadline): float
    {
        return max(0.001, ($deadline - hrtime(true)) / 1e9);
    }

    private static function lastError(): string
    {
        $e = error_get_last();
        return $e === null ? 'unknown error' : preg_replace('/^[a-z_]+\(.*?\): /', '', $e['message']);
    }
}
