<?php
// The example site's shared code: its users, the PHP session, the CSRF
// token, and the wspush PHP client. Lives outside the document root; the
// pages in www/ and the session check require it.
//
// Settings come from the environment (php-fpm's pool: env[NAME] = value),
// with the defaults of an installed system:
//   WSPUSH_PHP_CLIENT      the PHP client       /usr/share/wspush/php/WsPush.php
//   WSPUSH_PUBLISH_SOCKET  ws-server's socket   /run/wspush/publish.sock
//   WSPUSH_JWT_SECRET_FILE set only under Apache ([publisher] auth = jwt):
//                          the wspush secret that signs the login cookie
declare(strict_types=1);

require_once getenv('WSPUSH_PHP_CLIENT') ?: '/usr/share/wspush/php/WsPush.php';

// The site's users: name => password_hash(). A real site has its database.
const USERS = ['demo' => '$2y$10$ANnmITVdfZG0wNiVyyzDHOyq7dg7Wf/uIMVT5/q4nNjmtA9qW7KIa'];
const PUBLIC_CHANNEL = 'public/demo';
const JWT_COOKIE = 'jwt';          // [publisher] jwt_cookie
const JWT_TTL = 8 * 3600;          // the login cookie's lifetime (renewed on each page)

function session_options(): array
{
    $https = ($_SERVER['HTTPS'] ?? '') !== '' && $_SERVER['HTTPS'] !== 'off';
    return [
        'use_strict_mode' => true,     // never adopt a session id the client made up
        'use_only_cookies' => true,
        'cookie_httponly' => true,     // page scripts never see the session id
        'cookie_samesite' => 'Lax',    // not sent on other sites' POSTs
        'cookie_secure' => $https,
    ];
}

// The logged-in user, or null. Reads the session and releases its lock at
// once (read_and_close): a page never makes the next request wait behind it.
// Without a session cookie, or with one naming no session, no session is
// started at all.
function session_user(): ?string
{
    $id = $_COOKIE[session_name()] ?? null;
    if (!is_string($id) || !session_file_exists($id)) return null;
    session_start(['read_and_close' => true] + session_options());
    return $_SESSION['user'] ?? null;
}

// Whether the files save handler holds a session of this id. Started with
// an unknown id, strict mode makes a new id and reading it creates an
// empty file: a stale or made-up cookie would leave one per request.
// Other handlers (and the files handler's N;/path layout) are left to PHP.
function session_file_exists(string $id): bool
{
    $dir = session_save_path();
    if (ini_get('session.save_handler') !== 'files' || str_contains($dir, ';')) return true;
    return preg_match('/^[a-zA-Z0-9,-]{1,256}$/D', $id) === 1
        && is_file(($dir !== '' ? $dir : sys_get_temp_dir()) . "/sess_$id");
}

// Opens the session for writing (login, logout); the caller ends it.
function session_open(): void
{
    session_start(session_options());
}

function log_in(string $user): void
{
    session_open();
    session_regenerate_id(true);               // a fresh id after login (fixation)
    $_SESSION['user'] = $user;
    $_SESSION['csrf'] = bin2hex(random_bytes(16));
    session_write_close();
    set_login_jwt($user);
}

// Ends the session of this browser; returns the user it belonged to.
function log_out(): ?string
{
    $user = $_SESSION['user'] ?? null;
    $_SESSION = [];
    $p = session_get_cookie_params();
    setcookie(session_name(), '', ['expires' => 1] + array_intersect_key($p,
              array_flip(['path', 'domain', 'secure', 'httponly', 'samesite'])));
    session_destroy();
    if (jwt_secret_file() !== null) {
        setcookie(JWT_COOKIE, '', ['expires' => 1, 'path' => '/push/', 'httponly' => true,
                                   'samesite' => 'Strict', 'secure' => session_options()['cookie_secure']]);
    }
    return $user;
}

function check_password(string $user, string $password): bool
{
    return isset(USERS[$user]) && password_verify($password, USERS[$user]);
}

// The login form's CSRF token, before there is a session: a random value
// in a SameSite=Strict cookie that the form repeats (a double submit), so
// no session file is made for a visitor. Another site's post carries no
// such cookie and cannot log the browser into an account of its choosing.
const LOGIN_CSRF_COOKIE = 'login_csrf';

function login_csrf_token(): string
{
    $t = $_COOKIE[LOGIN_CSRF_COOKIE] ?? null;
    if (!is_string($t) || !preg_match('/^[0-9a-f]{32}$/D', $t)) {
        $t = bin2hex(random_bytes(16));
        setcookie(LOGIN_CSRF_COOKIE, $t, ['path' => '/', 'httponly' => true, 'samesite' => 'Strict',
                                          'secure' => session_options()['cookie_secure']]);
    }
    return $t;
}

function login_csrf_ok(mixed $given): bool
{
    $t = $_COOKIE[LOGIN_CSRF_COOKIE] ?? null;
    return is_string($t) && is_string($given) && $t !== '' && hash_equals($t, $given);
}

// The session's CSRF token, for forms and the logout link.
function csrf_token(): string
{
    return $_SESSION['csrf'] ?? '';
}

function csrf_ok(?string $given): bool
{
    return is_string($given) && csrf_token() !== '' && hash_equals(csrf_token(), $given);
}

function inbox(string $user): string
{
    return "user/$user/inbox";
}

function push(): WsPush
{
    return new WsPush(getenv('WSPUSH_PUBLISH_SOCKET') ?: '/run/wspush/publish.sock');
}

// ---- Apache only: the login cookie for [publisher] auth = jwt

// Set only under Apache: the secret file fcgi-publisher and ws-server share.
function jwt_secret_file(): ?string
{
    return getenv('WSPUSH_JWT_SECRET_FILE') ?: null;
}

// Sets (or renews) the HS256 login JWT that fcgi-publisher reads from the
// cookie under auth = jwt, signed by the PHP client. Under nginx
// (auth_request) it does nothing.
function set_login_jwt(string $user): void
{
    $file = jwt_secret_file();
    if ($file === null) return;
    $secret = file_get_contents($file);
    if ($secret === false) throw new RuntimeException("cannot read $file");
    $signer = new WsPush(getenv('WSPUSH_PUBLISH_SOCKET') ?: '/run/wspush/publish.sock', 5.0, $secret);
    setcookie(JWT_COOKIE, $signer->loginToken($user, JWT_TTL), [
        'expires' => time() + JWT_TTL, 'path' => '/push/', 'httponly' => true,
        'samesite' => 'Strict', 'secure' => session_options()['cookie_secure'],
    ]);
}

// A value as a JavaScript literal inside <script>: with < > & ' " escaped
// as \u00XX, a string holding "</script>" or "<!--" cannot end the script.
function js(mixed $v): string
{
    return json_encode($v, JSON_HEX_TAG | JSON_HEX_AMP | JSON_HEX_APOS | JSON_HEX_QUOT
                           | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
}

function h(string $s): string
{
    return htmlspecialchars($s, ENT_QUOTES, 'UTF-8');
}

function redirect(string $to): never
{
    header('Location: ' . $to, true, 303);
    exit;
}
