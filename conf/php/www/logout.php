<?php
// GET /logout.php?csrf=… — the logout link. Ends this browser's session
// first, then closes the user's WebSocket connections (close 4401) and
// revokes the subscribe tokens issued so far: this browser's pages cannot
// get a new token any more, the user's other sessions fetch one and
// reconnect by themselves. The CSRF token in the link keeps another site
// from logging the user out.
declare(strict_types=1);
require __DIR__ . '/../app/site.php';

if (isset($_COOKIE[session_name()])) {
    session_open();
    if (isset($_SESSION['user']) && csrf_ok($_GET['csrf'] ?? null)) {
        $user = log_out();
        try {
            push()->disconnect($user);
        } catch (Throwable $e) {
            // The session is gone either way; the pages still connected
            // lose their private channel when their token expires.
            error_log("wspush disconnect $user: " . $e->getMessage());
        }
    } else {
        session_write_close();
    }
}
redirect('/');
