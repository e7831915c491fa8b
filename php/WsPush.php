<?php
/*
 * WsPush — PHP client of ws-server's publish socket (docs/php.md, "The PHP
 * client"; the protocol is docs/protocol.md, "The publish socket protocol").
 * One file, no dependencies, PHP >= 8.1.
 */

declare(strict_types=1);

/** Every failure of a call to ws-server. */
class WsPushException extends RuntimeException
{
}

final class WsPush
{
    public function __construct(
        string $socketPath = '/run/wspush/publish.sock',
        float $timeout = 5.0,
        ?string $secret = null
    ) {
        throw new LogicException('not implemented yet');
    }

    public static function fromIni(string $iniPath, float $timeout = 5.0): self
    {
        throw new LogicException('not implemented yet');
    }

    /** @return array{id: string, subscribers: int} */
    public function publish(string|array $channels, mixed $data): array
    {
        throw new LogicException('not implemented yet');
    }

    /** @return array{id: string, subscribers: int} */
    public function publishJson(string|array $channels, string $json): array
    {
        throw new LogicException('not implemented yet');
    }

    /** @return array{connections: int} */
    public function disconnect(string $user): array
    {
        throw new LogicException('not implemented yet');
    }

    public function subscribeToken(string $user, array $channels, int $ttl): string
    {
        throw new LogicException('not implemented yet');
    }
}
