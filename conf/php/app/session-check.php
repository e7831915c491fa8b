<?php
// nginx's auth_request target for /push/ (never reachable from outside:
// its location is `internal`). 204 + the user name in X-Wspush-User for a
// logged-in session, which nginx passes to fcgi-publisher as REMOTE_USER;
// 401 otherwise, which nginx answers as JSON.
// The session is read and its lock released at once (read_and_close): a
// publish never waits behind a page that is still running.
declare(strict_types=1);
require __DIR__ . '/site.php';

$user = session_user();
if ($user === null) {
    http_response_code(401);
    exit;
}
header('X-Wspush-User: ' . $user);
http_response_code(204);
