<?php
// GET /  — the login form, or the page of a logged-in user.
// POST / — the login form's answer.
declare(strict_types=1);
require __DIR__ . '/../app/site.php';

$error = null;
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    $name = (string)($_POST['user'] ?? '');
    if (!login_csrf_ok($_POST['csrf'] ?? null)) {
        http_response_code(403);           // another site's post, or an old form
        $error = 'The login form was not this site\'s: please log in again.';
    } elseif (check_password($name, (string)($_POST['password'] ?? ''))) {
        log_in($name);
        redirect('/');
    } else {
        $error = 'Wrong user name or password.';
    }
}

$user = session_user();
if ($user !== null) {
    set_login_jwt($user);                  // Apache: renew the login cookie
    $csrf = csrf_token();
} else {
    $loginCsrf = login_csrf_token();
}
header('Cache-Control: no-store');
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wspush PHP example</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  .card { border: 1px solid #dde; border-radius: 6px; padding: 1rem; margin: 1rem 0; }
  form { display: flex; gap: .5rem; flex-wrap: wrap; align-items: center; }
  input[type=text], input[type=password] { flex: 1; min-width: 10rem; padding: .4rem; }
  #state { padding: .1rem .6rem; border-radius: 1rem; background: #ddd; font-weight: 600; }
  #state[data-state="open"] { background: #c9f0cf; }
  .error { color: #a00; }
  td { padding: .2rem .5rem; border-bottom: 1px solid #eee; font-family: ui-monospace, monospace; }
  td:nth-child(-n+2) { white-space: nowrap; color: #555; }
</style>
</head>
<body>
<?php if ($user === null): ?>
<h1>Log in</h1>
<?php if ($error): ?><p class="error" id="login-error"><?= h($error) ?></p><?php endif ?>
<form method="post" action="/" class="card">
  <input name="csrf" type="hidden" value="<?= h($loginCsrf) ?>">
  <input name="user" type="text" placeholder="user (demo)" autocomplete="username" required>
  <input name="password" type="password" placeholder="password (demo)" autocomplete="current-password" required>
  <button type="submit">Log in</button>
</form>
<?php else: ?>
<h1>Hello, <span id="user"><?= h($user) ?></span></h1>
<p>Connection: <span id="state" data-state="closed">closed</span>
  &middot; <a id="logout" href="/logout.php?csrf=<?= h($csrf) ?>">Log out</a></p>

<div class="card">
  <form id="publish">
    <select id="channel">
      <option><?= h(PUBLIC_CHANNEL) ?></option>
      <option><?= h(inbox($user)) ?></option>
    </select>
    <input id="text" type="text" placeholder="a message" required>
    <button id="send" type="submit">Publish</button>
  </form>
  <p id="result">From the page: <code>POST /push/publish</code> with your session.</p>
</div>

<div class="card">
  <form id="notify" method="post" action="/notify.php">
    <input type="hidden" name="csrf" value="<?= h($csrf) ?>">
    <input name="text" type="text" placeholder="a message from the server">
    <button type="submit">Publish from PHP</button>
  </form>
  <p id="notified"><?php
    if (isset($_GET['sent'])) echo 'PHP published ' . h((string)$_GET['sent']) . ' to '
        . h((string)($_GET['subscribers'] ?? '?')) . ' subscriber(s)';
    elseif (isset($_GET['failed'])) echo '<span class="error" id="notify-failed">PHP publish failed (the server log has why).</span>';
    else echo 'From PHP: <code>notify.php</code> publishes to your inbox through the publish socket.';
  ?></p>
</div>

<table><tbody id="messages"></tbody></table>

<script src="/js/wspush.js"></script>
<script>
"use strict";
const channels = <?= js([PUBLIC_CHANNEL, inbox($user)]) ?>;
const $ = (id) => document.getElementById(id);
const push = new WsPush({
  url: "/ws",
  channels,
  tokenChannels: [channels[1]],          // the inbox needs a subscribe token
  tokenUrl: "/push/token",               // fetched with the session cookie
});
push.on("state", (s) => { $("state").textContent = s.state + (s.code ? " (" + s.code + ")" : "");
                          $("state").dataset.state = s.state; });
push.on("message", (m) => {
  const tr = $("messages").insertRow(0);
  tr.className = "message";
  tr.dataset.channel = m.channel;
  for (const v of [m.channel, m.id, typeof m.data === "string" ? m.data : JSON.stringify(m.data)])
    tr.insertCell().textContent = v;
});
push.connect();
window.sitePush = push;                  // for the browser console and the tests

$("publish").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const ans = await WsPush.publish($("channel").value, $("text").value);
    $("result").textContent = "published " + ans.id + " (" + ans.subscribers + " subscriber(s))";
    $("text").value = "";
  } catch (e) {
    $("result").textContent = "refused: " + (e.status || "") + " " + e.message;
  }
});
</script>
<?php endif ?>
</body>
</html>
