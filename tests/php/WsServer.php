<?php
/*
 * A real ws-server for the PHP client's tests: a throw-away directory with
 * wspush.ini, the secret and the publish socket, the binary from
 * $WSPUSH_BIN (default build/bin), a free loopback port. The PHP twin of
 * tests/integration/harness.py's Env.
 */

declare(strict_types=1);

final class WsServer
{
    public const SECRET = 'php-client-test-secret-0123456789abcdef';
    private const START_TIMEOUT = 10.0;   // seconds; ASan builds start slower
    private const STOP_TIMEOUT = 10.0;

    public readonly string $dir;
    public readonly string $ini;
    public readonly string $socket;
    public readonly int $port;
    /** The second ws-server started in: tokens must be dated later (revoke.h's not_before). */
    public int $startedAt = 0;
    private $proc = null;

    /** @param array<string, array<string, string>> $extra ini keys by section, over the defaults */
    public function __construct(array $extra = [], ?string $dir = null)
    {
        $this->dir = $dir ?? self::tempDir('wspush-php-');
        $this->ini = "$this->dir/wspush.ini";
        $this->socket = "$this->dir/publish.sock";
        $this->port = self::freePort();
        file_put_contents("$this->dir/secret", self::SECRET . "\n");
        chmod("$this->dir/secret", 0600);
        $sections = array_replace_recursive([
            'wspush' => ['publish_socket' => $this->socket, 'secret_file' => 'secret', 'log_level' => 'debug'],
            'ws-server' => ['listen' => "127.0.0.1:$this->port", 'ping_interval' => '60s',
                            'close_timeout' => '1s', 'max_message_bytes' => '4k'],
            'channels' => ['public' => 'public/*'],
        ], $extra);
        $text = "; written by tests/php/WsServer.php\n";
        foreach ($sections as $name => $keys) {
            $text .= "[$name]\n";
            foreach ($keys as $k => $v) {
                $text .= "$k = $v\n";
            }
        }
        file_put_contents($this->ini, $text);
    }

    public static function bin(): string
    {
        $dir = getenv('WSPUSH_BIN') ?: dirname(__DIR__, 2) . '/build/bin';
        return "$dir/ws-server";
    }

    public static function tempDir(string $prefix): string
    {
        $d = sys_get_temp_dir() . '/' . $prefix . bin2hex(random_bytes(6));
        mkdir($d, 0700);
        return $d;
    }

    public static function freePort(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = stream_socket_get_name($s, false);
        fclose($s);
        return (int)substr($name, strrpos($name, ':') + 1);
    }

    /** Starts ws-server and returns once it accepts WebSocket and publish connections. */
    public function start(): void
    {
        $log = "$this->dir/ws-server.log";
        $this->proc = proc_open([self::bin(), '-c', $this->ini],
                                [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
                                $pipes);
        if ($this->proc === false) {
            throw new RuntimeException('cannot start ' . self::bin());
        }
        self::waitFor(function (): bool {
            if (!proc_get_status($this->proc)['running']) {
                throw new RuntimeException("ws-server exited:\n" . $this->log());
            }
            $c = @stream_socket_client("tcp://127.0.0.1:$this->port", $errno, $errstr, 0.2);
            if ($c === false) {
                return false;
            }
            fclose($c);
            return file_exists($this->socket);
        }, self::START_TIMEOUT, 'ws-server to listen');
        /* The fine clock, like ws-server's (revoke_clock): its start second
         * is at most this one. */
        $this->startedAt = (int)floor(microtime(true));
    }

    /** SIGTERM, and the exit status (0 is a clean exit; ASan makes it other). */
    public function stop(): ?int
    {
        if ($this->proc === null) {
            return null;
        }
        $proc = $this->proc;
        $this->proc = null;
        $status = proc_get_status($proc);
        if ($status['running']) {
            proc_terminate($proc, SIGTERM);
            try {
                self::waitFor(function () use ($proc, &$status): bool {
                    $status = proc_get_status($proc);
                    return !$status['running'];
                }, self::STOP_TIMEOUT, 'ws-server to exit');
            } catch (RuntimeException $e) {
                proc_terminate($proc, SIGKILL);
                proc_close($proc);
                throw $e;
            }
        }
        proc_close($proc);
        return $status['signaled'] ? 128 + $status['termsig'] : $status['exitcode'];
    }

    public function log(): string
    {
        return (string)@file_get_contents("$this->dir/ws-server.log");
    }

    /** Once started: waits (at most a second) until time() is past the start second. */
    public function waitPastStartSecond(): void
    {
        self::waitFor(fn (): bool => time() > $this->startedAt, 2.0, 'the next second');
    }

    public function remove(): void
    {
        $this->stop();
        self::removeTree($this->dir);
    }

    public static function removeTree(string $dir): void
    {
        foreach (glob("$dir/{,.}[!.]*", GLOB_BRACE) ?: [] as $f) {
            is_dir($f) && !is_link($f) ? self::removeTree($f) : @unlink($f);
        }
        @rmdir($dir);
    }

    /** Polls $pred every 10 ms until it holds; throws after $timeout seconds. */
    public static function waitFor(callable $pred, float $timeout, string $what): void
    {
        $deadline = microtime(true) + $timeout;
        while (!$pred()) {
            if (microtime(true) > $deadline) {
                throw new RuntimeException("timed out waiting for $what");
            }
            usleep(10000);
        }
    }
}
