<?php
// POST /notify.php — a server-side action: the site publishes to the
// user's inbox through the PHP client (publish socket, no HTTP), as a
// backend job would. A plain form post, checked against the session's
// CSRF token, answered with a redirect back to the page.
declare(strict_types=1);
require __DIR__ . '/../app/site.php';

$user = session_user();
if ($user === null) redirect('/');
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !csrf_ok($_POST['csrf'] ?? null)) {
    http_response_code(403);
    exit("refused: not a form post of this site\n");
}
$text = trim((string)($_POST['text'] ?? '')) ?: 'hello from the server';
try {
    $ans = push()->publish(inbox($user), ['from' => 'server', 'text' => $text]);
    redirect('/?' . http_build_query(['sent' => $ans['id'], 'subscribers' => $ans['subscribers']]));
} catch (Throwable $e) {
    // The details (a socket path, ws-server's words) go to the log, not
    // into the URL and the page.
    error_log('notify.php: publish to ' . inbox($user) . ' failed: ' . get_class($e) . ': ' . $e->getMessage());
    redirect('/?failed=1');
}
