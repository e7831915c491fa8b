<?php
/*
 * php/WsPush.php against a real ws-server ($WSPUSH_BIN, default build/bin),
 * checked by what a page receives over a real WebSocket. Run by
 * tests/stages/php.sh (phpunit tests/php).
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/../../php/WsPush.php';
require_once __DIR__ . '/WsServer.php';
require_once __DIR__ . '/WsSubscriber.php';

final class WsPushTest extends TestCase
{
    private static WsServer $ws;
    /** @var list<WsServer|string> servers and directories a test made, removed after it */
    private array $cleanup = [];
    /** @var list<WsSubscriber> */
    private array $subs = [];

    public static function setUpBeforeClass(): void
    {
        self::$ws = new WsServer();
        self::$ws->start();
    }

    public static function tearDownAfterClass(): void
    {
        $rc = self::$ws->stop();
        $log = self::$ws->log();
        WsServer::removeTree(self::$ws->dir);
        self::assertSame(0, $rc, "ws-server did not exit cleanly:\n$log");
    }

    protected function tearDown(): void
    {
        foreach ($this->subs as $s) {
            $s->close();
        }
        foreach ($this->cleanup as $c) {
            if ($c instanceof WsServer) {
                $rc = $c->stop();
                $log = $c->log();
                WsServer::removeTree($c->dir);
                $this->assertContains($rc, [null, 0], "ws-server did not exit cleanly:\n$log");
            } else {
                WsServer::removeTree($c);
            }
        }
    }

    private function client(float $timeout = 5.0): WsPush
    {
        return WsPush::fromIni(self::$ws->ini, $timeout);
    }

    /** A subscriber that has seen its "subscribed" hello, so it gets every later publish. */
    private function subscribe(string $query, ?WsServer $ws = null): WsSubscriber
    {
        $s = new WsSubscriber(($ws ?? self::$ws)->port, $query);
        $this->subs[] = $s;
        $hello = json_decode($s->text(), true, 512, JSON_THROW_ON_ERROR);
        $this->assertSame('subscribed', $hello['type']);
        return $s;
    }

    /** ws-server's message envelope, as it frames it (ws-server/msg.c). */
    private static function envelope(string $channel, string $id, string $json): string
    {
        return '{"type":"message","channel":"' . $channel . '","id":"' . $id . '","data":' . $json . '}';
    }

    // ---- what a page receives

    public function testPublishDeliversTheExactEnvelope(): void
    {
        $sub = $this->subscribe('channels=public/envelope');
        $ack = $this->client()->publish('public/envelope', ['text' => 'hi', 'n' => 1.0, 'path' => 'a/b', 'list' => [1, null, true]]);
        $this->assertSame(1, $ack['subscribers']);
        $this->assertMatchesRegularExpression('/^[0-9a-f]+-[0-9]+$/', $ack['id']);
        $this->assertSame(['id', 'subscribers'], array_keys($ack));
        $this->assertSame(
            self::envelope('public/envelope', $ack['id'], '{"text":"hi","n":1.0,"path":"a/b","list":[1,null,true]}'),
            $sub->text()
        );
    }

    public function testUnicodeArrivesUnchanged(): void
    {
        $sub = $this->subscribe('channels=public/unicode');
        $text = "ünïcødé ✓ 漢字 😀 \u{2028}";
        $ack = $this->client()->publish('public/unicode', ['t' => $text]);
        /* Raw UTF-8, not \u escapes: the bytes the PHP string held. */
        $this->assertSame(self::envelope('public/unicode', $ack['id'], '{"t":"' . $text . '"}'), $sub->text());
    }

    public function testPublishJsonKeepsA23DigitIntegerByteForByte(): void
    {
        $sub = $this->subscribe('channels=public/bigint');
        $json = '{ "big" : 12345678901234567890123, "neg": -98765432109876543210987 }';
        $ack = $this->client()->publishJson('public/bigint', $json);
        $this->assertSame(self::envelope('public/bigint', $ack['id'], $json), $sub->text());
    }

    public function testOnePublishToSeveralChannels(): void
    {
        $a = $this->subscribe('channels=public/multi-a');
        $b = $this->subscribe('channels=public/multi-b');
        $ack = $this->client()->publish(['public/multi-a', 'public/multi-b'], 'both');
        $this->assertSame(2, $ack['subscribers']);
        $this->assertSame(self::envelope('public/multi-a', $ack['id'], '"both"'), $a->text());
        $this->assertSame(self::envelope('public/multi-b', $ack['id'], '"both"'), $b->text());
    }

    // ---- refusals by ws-server: an exception with the protocol's code, the connection kept

    public static function refusals(): array
    {
        return [
            'bad channel name' => [fn (WsPush $c) => $c->publish('public/with space', 1), WsPushRefusedException::ERR_BAD_CHANNEL],
            'channel twice' => [fn (WsPush $c) => $c->publish(['public/x', 'public/x'], 1), WsPushRefusedException::ERR_BAD_CHANNEL],
            'too big' => [fn (WsPush $c) => $c->publish('public/big', str_repeat('x', 5000)), WsPushRefusedException::ERR_TOO_BIG],
            'not one JSON value' => [fn (WsPush $c) => $c->publishJson('public/json', '{"a":1} 2'), WsPushRefusedException::ERR_BAD_DATA],
            'beyond a double' => [fn (WsPush $c) => $c->publishJson('public/json', '1e400'), WsPushRefusedException::ERR_BAD_DATA],
        ];
    }

    /** @dataProvider refusals */
    public function testRefusalsAreExceptionsAndNothingIsDelivered(callable $call, int $code): void
    {
        $sub = $this->subscribe('channels=public/with-after');
        $c = $this->client();
        try {
            $call($c);
            $this->fail('no exception');
        } catch (WsPushRefusedException $e) {
            $this->assertSame($code, $e->getCode(), $e->getMessage());
            $this->assertStringStartsWith('ws-server refused: ', $e->getMessage());
        }
        /* The connection is still good, and the refused message went nowhere:
         * the next frame the page sees is the next publish. */
        $ack = $c->publish('public/with-after', 'after');
        $this->assertSame(self::envelope('public/with-after', $ack['id'], '"after"'), $sub->text());
    }

    public function testPeerOutsideTheAllowListIsRefused(): void
    {
        if (posix_geteuid() !== 0) {
            $this->markTestSkipped('needs root to connect as another uid (nobody)');
        }
        /* ws-server's own uid (ours) is always allowed; nobody is not in the list. */
        $dir = WsServer::tempDir('wspush-php-allow-');
        chmod($dir, 0755);
        $ws = new WsServer(['ws-server' => ['publish_allow_uids' => '4242', 'publish_socket_mode' => '0666']], $dir);
        $this->cleanup[] = $ws;
        $ws->start();
        $this->assertSame(0, (new WsPush($ws->socket))->publish('public/a', 1)['subscribers']);

        copy(__DIR__ . '/../../php/WsPush.php', "$dir/WsPush.php");
        chmod("$dir/WsPush.php", 0644);
        file_put_contents("$dir/as-nobody.php", '<?php require __DIR__ . "/WsPush.php";
            try { (new WsPush($argv[1]))->publish("public/a", 1); echo "published"; }
            catch (WsPushException $e) { echo get_class($e), " ", $e->getCode(); }');
        chmod("$dir/as-nobody.php", 0644);
        $p = proc_open(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', PHP_BINARY, '-n',
                        "$dir/as-nobody.php", $ws->socket],
                       [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, $dir);
        $out = stream_get_contents($pipes[1]) . stream_get_contents($pipes[2]);
        proc_close($p);
        $this->assertSame('WsPushRefusedException ' . WsPushRefusedException::ERR_NOT_ALLOWED, $out);
    }

    // ---- arguments outside the protocol: caught before anything is sent

    public static function badArguments(): array
    {
        return [
            'no channel' => [fn (WsPush $c) => $c->publish([], 1), InvalidArgumentException::class],
            '33 channels' => [fn (WsPush $c) => $c->publish(array_map(fn ($i) => "public/$i", range(1, 33)), 1), InvalidArgumentException::class],
            'empty name' => [fn (WsPush $c) => $c->publish('', 1), InvalidArgumentException::class],
            '256-byte name' => [fn (WsPush $c) => $c->publish(str_repeat('a', 256), 1), InvalidArgumentException::class],
            'not a string' => [fn (WsPush $c) => $c->publish([42], 1), InvalidArgumentException::class],
            'NAN' => [fn (WsPush $c) => $c->publish('public/a', NAN), JsonException::class],
            'invalid UTF-8' => [fn (WsPush $c) => $c->publish('public/a', "\xff"), JsonException::class],
            'empty user' => [fn (WsPush $c) => $c->disconnect(''), InvalidArgumentException::class],
            'token without channels' => [fn (WsPush $c) => $c->subscribeToken('u', [], 60), InvalidArgumentException::class],
            'token ttl 0' => [fn (WsPush $c) => $c->subscribeToken('u', ['public/a'], 0), InvalidArgumentException::class],
        ];
    }

    /** @dataProvider badArguments */
    public function testBadArgumentsThrowBeforeSending(callable $call, string $class): void
    {
        $this->expectException($class);
        $call(new WsPush('/nonexistent/publish.sock', 1.0, WsServer::SECRET));
    }

    public function testConstructorChecks(): void
    {
        foreach ([fn () => new WsPush(str_repeat('/x', 60)), fn () => new WsPush('/s', 0.0),
                  fn () => new WsPush('/s', 1.0, 'too short')] as $make) {
            try {
                $make();
                $this->fail('accepted');
            } catch (InvalidArgumentException) {
                $this->addToAssertionCount(1);
            }
        }
    }

    // ---- ws-server missing or silent

    public function testNoSocketIsUnreachable(): void
    {
        $this->expectException(WsPushUnreachableException::class);
        $this->expectExceptionMessage('No such file or directory');
        (new WsPush('/nonexistent/publish.sock'))->publish('public/a', 1);
    }

    public function testSocketWithNobodyListeningIsUnreachable(): void
    {
        $dir = WsServer::tempDir('wspush-php-dead-');
        $this->cleanup[] = $dir;
        fclose(stream_socket_server("unix://$dir/publish.sock"));   // the file stays
        $this->assertFileExists("$dir/publish.sock");
        $this->expectException(WsPushUnreachableException::class);
        $this->expectExceptionMessage('Connection refused');
        (new WsPush("$dir/publish.sock"))->publish('public/a', 1);
    }

    public function testWsServerRestartedThenStopped(): void
    {
        $ws = new WsServer();
        $this->cleanup[] = $ws;
        $ws->start();
        $c = new WsPush($ws->socket);
        $c->publish('public/a', 1);
        /* A restart between two calls costs nothing: the connection closed
         * by the old ws-server is noticed before the request goes out. */
        $this->assertSame(0, $ws->stop());
        $ws->start();
        $sub = $this->subscribe('channels=public/back', $ws);
        $ack = $c->publish('public/back', 2);
        $this->assertSame(self::envelope('public/back', $ack['id'], '2'), $sub->text());

        $this->assertSame(0, $ws->stop());
        $this->expectException(WsPushUnreachableException::class);
        $c->publish('public/a', 3);
    }

    public function testTimeoutOnASocketNobodyReads(): void
    {
        $dir = WsServer::tempDir('wspush-php-deaf-');
        $this->cleanup[] = $dir;
        $server = stream_socket_server("unix://$dir/publish.sock");   // listens, never accepts
        $t0 = microtime(true);
        try {
            (new WsPush("$dir/publish.sock", 0.3))->publish('public/a', 1);
            $this->fail('no timeout');
        } catch (WsPushTimeoutException $e) {
            $took = microtime(true) - $t0;
            $this->assertGreaterThanOrEqual(0.29, $took);
            $this->assertLessThan(2.0, $took);
        }
        fclose($server);
    }

    /**
     * Runs $test(socket path) against silent_server.php (with $mode) on a
     * socket in a new directory; returns the server's event log.
     */
    private function withSilentServer(string $mode, callable $test): string
    {
        $dir = WsServer::tempDir('wspush-php-late-');
        $this->cleanup[] = $dir;
        $path = "$dir/publish.sock";
        $proc = proc_open([PHP_BINARY, __DIR__ . '/silent_server.php', $path, $mode],
                          [1 => ['pipe', 'w'], 2 => ['file', "$dir/stderr", 'w']], $pipes);
        try {
            $r = [$pipes[1]];
            $w = $e = null;
            $this->assertSame(1, stream_select($r, $w, $e, 5), 'silent_server did not start');
            $this->assertSame("ready\n", fgets($pipes[1]));
            $test($path);
        } finally {
            proc_terminate($proc);
            $log = stream_get_contents($pipes[1]);
            proc_close($proc);
        }
        return $log;
    }

    public function testAnAnswerToAnotherRequestIsSkipped(): void
    {
        $log = $this->withSilentServer('stale', function (string $path): void {
            $c = new WsPush($path, 2.0);
            $this->assertSame('fresh', $c->publish('public/a', 1)['id']);
            $this->assertSame('fresh', $c->publish('public/a', 2)['id']);
        });
        $this->assertSame(1, substr_count($log, 'accept '), $log);
    }

    public function testAfterATimeoutTheLateAnswerIsNeverRead(): void
    {
        $log = $this->withSilentServer('', function (string $path): void {
            $c = new WsPush($path, 0.3);
            try {
                $c->publish('public/a', 1);
                $this->fail('no timeout');
            } catch (WsPushTimeoutException $e) {
                $this->assertStringContainsString('may still be published', $e->getMessage());
            }
            /* The server now answers the first request late, on the first
             * connection, just before it answers this one. */
            $this->assertSame('fresh', $c->publish('public/a', 2)['id']);
        });
        $this->assertSame(2, substr_count($log, 'accept '), $log);
        $this->assertStringContainsString("eof 1\n", $log);
    }

    // ---- one connection

    /** @return list<string> the socket inodes this process holds open */
    private static function openSockets(): array
    {
        $out = [];
        foreach (glob('/proc/self/fd/*') as $fd) {
            $l = @readlink($fd);
            if ($l !== false && str_starts_with($l, 'socket:')) {
                $out[] = $l;
            }
        }
        sort($out);
        return $out;
    }

    public function testOneConnectionForManyCallsAndClients(): void
    {
        $ws = new WsServer();
        $this->cleanup[] = $ws;
        $ws->start();
        $before = self::openSockets();
        (new WsPush($ws->socket))->publish('public/a', 0);
        $after = self::openSockets();
        $this->assertCount(count($before) + 1, $after);
        for ($i = 1; $i <= 5; $i++) {
            (new WsPush($ws->socket))->publish('public/a', $i);   // a new object each time
            $c = new WsPush($ws->socket);
            $c->publish(['public/a', 'public/b'], $i);
            $c->disconnect('nobody-here');
            $this->assertSame($after, self::openSockets(), "call $i opened another socket");
        }
    }

    public function testAForkedChildOpensItsOwnConnection(): void
    {
        $ws = new WsServer();
        $this->cleanup[] = $ws;
        $ws->start();
        $before = self::openSockets();
        (new WsPush($ws->socket))->publish('public/a', 'parent');
        $parentLink = array_values(array_diff(self::openSockets(), $before));
        $this->assertCount(1, $parentLink);
        $out = "$ws->dir/child";
        $pid = pcntl_fork();
        if ($pid === 0) {
            /* The child: publish, report the sockets it holds, and vanish
             * without running phpunit's shutdown. */
            try {
                (new WsPush($ws->socket))->publish('public/a', 'child');
                file_put_contents($out, implode(' ', self::openSockets()));
            } finally {
                posix_kill(posix_getpid(), SIGKILL);
            }
        }
        pcntl_waitpid($pid, $status);
        $childHeld = explode(' ', (string)@file_get_contents($out));
        $this->assertNotContains($parentLink[0], $childHeld, 'the child used the connection it inherited');
        $this->assertCount(count($before) + 1, $childHeld, 'the child did not hold exactly one new connection');
        /* The parent's connection is still its own and still works. */
        (new WsPush($ws->socket))->publish('public/a', 'parent again');
        $expect = array_merge($before, $parentLink);
        sort($expect);
        $this->assertSame($expect, self::openSockets());
    }

    // ---- disconnect and subscribe tokens

    public function testDisconnectClosesTheUsersPagesWith4401(): void
    {
        $c = $this->client();
        self::$ws->waitPastStartSecond();
        $tok = $c->subscribeToken('dora', ['user/dora/*'], 60);
        $page1 = $this->subscribe("channels=user/dora/inbox&token=$tok");
        $page2 = $this->subscribe("channels=user/dora/inbox,public/news&token=$tok");
        $other = $this->subscribe('channels=public/news');
        $this->assertSame(['connections' => 2], $c->disconnect('dora'));
        $this->assertSame(4401, $page1->closeCode());
        $this->assertSame(4401, $page2->closeCode());
        $ack = $c->publish('public/news', 'still here');
        $this->assertSame(self::envelope('public/news', $ack['id'], '"still here"'), $other->text());
    }

    public function testSubscribeTokenOpensAPrivateChannel(): void
    {
        $c = $this->client();
        self::$ws->waitPastStartSecond();
        $tok = $c->subscribeToken('erin', ['user/erin/*', 'team/ünï'], 60);
        $sub = $this->subscribe("channels=user/erin/inbox&token=$tok");
        $ack = $c->publish('user/erin/inbox', ['for' => 'erin']);
        $this->assertSame(1, $ack['subscribers']);
        $this->assertSame(self::envelope('user/erin/inbox', $ack['id'], '{"for":"erin"}'), $sub->text());

        [$h, $p] = explode('.', $tok);
        $claims = json_decode(base64_decode(strtr($p, '-_', '+/')), true);
        $this->assertSame(['channels', 'exp', 'iat', 'scope', 'sub'], array_keys($claims));
        $this->assertSame(['user/erin/*', 'team/ünï'], $claims['channels']);
        $this->assertSame('subscribe', $claims['scope']);
        $this->assertSame(60, $claims['exp'] - $claims['iat']);
        $this->assertEqualsWithDelta(time(), $claims['iat'], 1);
    }

    /** The signing itself, against a token shared/token.c's tok_issue made. */
    public function testTokenBytesAreThoseOfFcgiPublisher(): void
    {
        /* tok_issue(key "integration-test-secret-0123456789", sub "alice",
         * iat 1700000000, exp 1700003600, channels user/alice/* news). */
        $fromC = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjaGFubmVscyI6WyJ1c2VyL2FsaWNlLyoiLCJuZXdzIl0sImV4cCI6MT' .
                 'cwMDAwMzYwMCwiaWF0IjoxNzAwMDAwMDAwLCJzY29wZSI6InN1YnNjcmliZSIsInN1YiI6ImFsaWNlIn0.7mIm8P_Z79oc0q' .
                 'GOTtSSibaeOpQ92QH5OEGxvDLOL8o';
        $sign = new ReflectionMethod(WsPush::class, 'sign');
        $this->assertSame($fromC, $sign->invoke(null, 'integration-test-secret-0123456789',
            ['channels' => ['user/alice/*', 'news'], 'exp' => 1700003600, 'iat' => 1700000000,
             'scope' => 'subscribe', 'sub' => 'alice']));
    }

    /** A login token names the user and nothing else, signed like the subscribe token. */
    public function testLoginTokenHasOnlySubExpIat(): void
    {
        $before = time();
        $token = (new WsPush('/x', 1.0, WsServer::SECRET))->loginToken('alice', 600);
        [$h, $p, $s] = explode('.', $token);
        $this->assertSame('{"alg":"HS256","typ":"JWT"}', base64_decode(strtr($h, '-_', '+/')));
        $claims = json_decode(base64_decode(strtr($p, '-_', '+/')), true, 4, JSON_THROW_ON_ERROR);
        $this->assertSame(['exp', 'iat', 'sub'], array_keys($claims));
        $this->assertSame('alice', $claims['sub']);
        $this->assertGreaterThanOrEqual($before, $claims['iat']);
        $this->assertSame($claims['iat'] + 600, $claims['exp']);
        $mac = rtrim(strtr(base64_encode(hash_hmac('sha256', "$h.$p", WsServer::SECRET, true)), '+/', '-_'), '=');
        $this->assertSame($mac, $s);
        $this->expectException(InvalidArgumentException::class);
        (new WsPush('/x', 1.0, WsServer::SECRET))->loginToken('', 600);
    }

    public static function refusedTokens(): array
    {
        return [
            'tampered sub' => [function (WsPush $c): string {
                [$h, $p, $s] = explode('.', $c->subscribeToken('fred', ['user/gina/*'], 60));
                $claims = str_replace('"fred"', '"gina"', base64_decode(strtr($p, '-_', '+/')));
                return "$h." . rtrim(strtr(base64_encode($claims), '+/', '-_'), '=') . ".$s";
            }, 'user/gina/inbox', 4401],
            'expired' => [function (WsPush $c): string {
                $sign = new ReflectionMethod(WsPush::class, 'sign');
                return $sign->invoke(null, WsServer::SECRET, ['channels' => ['user/gina/*'], 'exp' => time() - 60,
                                     'iat' => time() - 120, 'scope' => 'subscribe', 'sub' => 'gina']);
            }, 'user/gina/inbox', 4401],
            'another secret' => [fn (WsPush $c) => (new WsPush('/x', 1.0, str_repeat('k', 40)))
                ->subscribeToken('gina', ['user/gina/*'], 60), 'user/gina/inbox', 4401],
            'channel not covered' => [fn (WsPush $c) => $c->subscribeToken('gina', ['user/gina/*'], 60),
                'user/hank/inbox', 4403],
        ];
    }

    /** @dataProvider refusedTokens */
    public function testBadTokensAreRefusedByWsServer(callable $make, string $channel, int $code): void
    {
        self::$ws->waitPastStartSecond();
        $tok = $make($this->client());
        $sub = new WsSubscriber(self::$ws->port, "channels=$channel&token=$tok");
        $this->subs[] = $sub;
        $this->assertSame($code, $sub->closeCode());
    }

    public function testFromIniReadsTheSameKeysAsWsServer(): void
    {
        $dir = WsServer::tempDir('wspush-php-ini-');
        $this->cleanup[] = $dir;
        mkdir("$dir/conf");
        file_put_contents("$dir/conf/key", WsServer::SECRET . "\r\n");
        file_put_contents("$dir/conf/wspush.ini", "\xEF\xBB\xBF; comment\n# another\n[ws-server]\n" .
            "publish_socket_mode = 0660\n[wspush]\n  publish_socket = " . self::$ws->socket . " ; where\n" .
            "secret_file=key\n[channels]\nsecret_file = not-this-one\n");
        $c = WsPush::fromIni("$dir/conf/wspush.ini");
        self::$ws->waitPastStartSecond();
        $sub = $this->subscribe('channels=user/ivy/inbox&token=' . $c->subscribeToken('ivy', ['user/ivy/*'], 60));
        $ack = $c->publish('user/ivy/inbox', 'via ini');
        $this->assertSame(self::envelope('user/ivy/inbox', $ack['id'], '"via ini"'), $sub->text());

        file_put_contents("$dir/twice.ini", "[wspush]\nsecret_file = a\nsecret_file = b\n");
        $this->expectException(WsPushException::class);
        $this->expectExceptionMessage("twice.ini:3: key 'secret_file' set again");
        WsPush::fromIni("$dir/twice.ini");
    }

    public function testMissingSecretFileFailsOnlySubscribeToken(): void
    {
        $dir = WsServer::tempDir('wspush-php-nosecret-');
        $this->cleanup[] = $dir;
        file_put_contents("$dir/wspush.ini", "[wspush]\npublish_socket = " . self::$ws->socket .
            "\nsecret_file = /nonexistent/secret\n");
        $c = WsPush::fromIni("$dir/wspush.ini");
        $this->assertSame(0, $c->publish('public/nobody', 1)['subscribers']);
        $this->expectException(WsPushException::class);
        $this->expectExceptionMessage('secret_file /nonexistent/secret: cannot read: ');
        $c->subscribeToken('u', ['public/a'], 60);
    }
}
