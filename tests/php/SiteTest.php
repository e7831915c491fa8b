<?php
/*
 * The example site's shared code (conf/php/app/site.php) on its own:
 * what it prints into the page. Run by tests/stages/php.sh with the
 * client tests (phpunit tests/php).
 */

declare(strict_types=1);

use PHPUnit\Framework\TestCase;

putenv('WSPUSH_PHP_CLIENT=' . __DIR__ . '/../../php/WsPush.php');
require_once __DIR__ . '/../../conf/php/app/site.php';

final class SiteTest extends TestCase
{
    public function testJsLiteralCannotLeaveTheScript(): void
    {
        $evil = "</script><script>alert('x')</script><!-- & \"q\"";
        $out = js(['user/' . $evil . '/inbox']);
        foreach (['<', '>', '&', "'"] as $c) {
            $this->assertStringNotContainsString($c, $out);
        }
        // Only the string's own quotes remain, and it decodes to the value.
        $this->assertSame(2, substr_count($out, '"'));
        $this->assertSame(['user/' . $evil . '/inbox'], json_decode($out, true));
    }
}
