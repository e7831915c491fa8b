# The PHP site's part of conf/demo/run.sh (WSPUSH_DEMO_SITE=php, `make
# run-php`), sourced by it: writes php-fpm's config and renders
# conf/php/nginx.conf or conf/php/apache.conf into the runtime directory,
# and defines php_start, which starts php-fpm and the web server.
# Uses run.sh's variables ($run, $root, $host, $port, $ws_port, $web, ...)
# and functions (start, wait_ready, die).

php_dir=$root/conf/php

# Writes SRC to OUT with each documented default (OLD) replaced by NEW; a
# default missing from SRC is an error, not a silent skip.
render() {
  local src=$1 out=$2 text old new
  text=$(<"$src") || die "cannot read $src"
  shift 2
  while [ $# -ge 2 ]; do
    old=$1 new=$2
    shift 2
    [[ $text == *"$old"* ]] || die "$src: '$old' not found to render"
    text=${text//"$old"/"$new"}
  done
  printf '%s\n' "$text" > "$out"
}

mkdir -m 0700 "$run/sessions"
# Apache's workers run as www-data when started as root: they may pass
# through the runtime directory (not list it) and reach the two sockets
# they use, by group.
web_group=""
if [ "$web" = apache ] && [ "$(id -u)" = 0 ]; then
  web_group=www-data
  chmod 0711 "$run"
  command -v runuser >/dev/null 2>&1 && ! runuser -u "$web_group" -- test -x "$run" -a -r "$here/www/wspush.js" \
    && die "Apache's user $web_group cannot reach $run or $here/www: a parent directory is private"
fi

# php-fpm, one pool, in the foreground. Started as root it must be told
# (-R) that its workers may run as root too: they read the runtime
# directory, which only root can.
jwt_env=""
[ "$auth" = jwt ] && jwt_env="env[WSPUSH_JWT_SECRET_FILE] = $run/secret"
cat > "$run/php-fpm.conf" <<FPM
[global]
pid = $run/php-fpm.pid
error_log = $run/php-fpm.log
daemonize = no

[site]
listen = $run/php-fpm.sock
listen.mode = 0660
${web_group:+listen.group = $web_group}
pm = static
pm.max_children = 3
catch_workers_output = yes
clear_env = yes
env[WSPUSH_PHP_CLIENT] = $php_client
env[WSPUSH_PUBLISH_SOCKET] = $run/publish.sock
$jwt_env
php_admin_value[session.save_path] = $run/sessions
php_admin_flag[log_errors] = on
security.limit_extensions = .php
FPM
fpm_root=()
[ "$(id -u)" = 0 ] && fpm_root=(-R)
"$fpm_bin" -t -y "$run/php-fpm.conf" "${fpm_root[@]}" 2>/dev/null || die "php-fpm rejects the demo config"

if [ "$web" = nginx ]; then
  render "$php_dir/nginx.conf" "$run/site.conf" \
    "listen 80;" "listen $host:$port;" \
    "/var/www/site" "$php_dir" \
    "/usr/share/wspush/js" "$here/www" \
    "unix:/run/php/php8.2-fpm.sock" "unix:$run/php-fpm.sock" \
    "unix:/run/wspush/fcgi.sock" "unix:$run/fcgi.sock" \
    "http://127.0.0.1:8081" "http://$host:$ws_port"
  cat > "$run/nginx.conf" <<NGINX
# Written by conf/demo/run.sh: conf/php/nginx.conf (site.conf) in a
# self-contained http block.
$user_line
worker_processes 1;
pid $run/nginx.pid;
error_log $run/nginx-error.log warn;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    charset utf-8;
    charset_types application/javascript;
    log_format wspush_demo '\$remote_addr \$wspush_user "\$request" \$status '
                           'origin="\$http_origin" fetch_site="\$http_sec_fetch_site"';
    access_log $run/access.log wspush_demo;
    client_body_temp_path $run/nginx-tmp/body;
    proxy_temp_path       $run/nginx-tmp/proxy;
    fastcgi_temp_path     $run/nginx-tmp/fastcgi;
    uwsgi_temp_path       $run/nginx-tmp/uwsgi;
    scgi_temp_path        $run/nginx-tmp/scgi;
    include $run/site.conf;
}
NGINX
else
  render "$php_dir/apache.conf" "$run/site.conf" \
    "<VirtualHost *:80>" "<VirtualHost $host:$port>" \
    "/var/www/site" "$php_dir" \
    "/usr/share/wspush/js" "$here/www" \
    "unix:/run/php/php8.2-fpm.sock" "unix:$run/php-fpm.sock" \
    "unix:/run/wspush/fcgi.sock" "unix:$run/fcgi.sock" \
    "ws://127.0.0.1:8081/ws" "ws://$host:$ws_port/ws"
  {
    printf '%s\n' "# Written by conf/demo/run.sh: conf/php/apache.conf (site.conf) in a" \
      "# self-contained server config." \
      "ServerRoot $run" "DefaultRuntimeDir $run" "PidFile $run/httpd.pid" \
      "ErrorLog $run/apache-error.log" "LogLevel warn" \
      "Listen $host:$port" "ServerName $host" \
      "TypesConfig /etc/mime.types" \
      "# One child process, started once: a child forked while the demo" \
      "# stops could outlive Apache's own shutdown. Each WebSocket holds a thread." \
      "StartServers 1" "ServerLimit 1" "ThreadsPerChild 64" "MaxRequestWorkers 64" \
      "MinSpareThreads 1" "MaxSpareThreads 64" \
      "LogFormat \"%a %u \\\"%r\\\" %>s origin=\\\"%{Origin}i\\\" fetch_site=\\\"%{Sec-Fetch-Site}i\\\"\" wspush_demo" \
      "CustomLog $run/access.log wspush_demo"
    [ -n "$web_group" ] && printf '%s\n' "User $web_group" "Group $web_group"
    # mpm_worker, not Debian's default mpm_event: on SIGTERM an event
    # child kept its listener thread, with the WebSocket tunnels the
    # browser had closed (CLOSE-WAIT), for ~8 s, past run.sh's patience, in
    # about one stop of three; worker's child exits at once.
    for m in mpm_worker authz_core dir mime alias headers proxy proxy_fcgi proxy_http proxy_wstunnel; do
      echo "LoadModule ${m}_module /usr/lib/apache2/modules/mod_$m.so"
    done
    echo "Include $run/site.conf"
  } > "$run/httpd.conf"
  /usr/sbin/apache2 -t -f "$run/httpd.conf" 2>"$run/apache-error.log" \
    || die "Apache rejects the demo config: $(cat "$run/apache-error.log")"
fi

php_start() {
  start php-fpm "$fpm_bin" -F -y "$run/php-fpm.conf" "${fpm_root[@]}"
  wait_ready php-fpm test -S "$run/php-fpm.sock"
  if [ "$web" = nginx ]; then
    start nginx "$nginx_bin" -p "$run" -e "$run/nginx-error.log" -c "$run/nginx.conf" -g 'daemon off;'
  else
    [ -n "$web_group" ] && { chgrp "$web_group" "$run/fcgi.sock" || die "chgrp $run/fcgi.sock failed"; }
    start apache /usr/sbin/apache2 -f "$run/httpd.conf" -DFOREGROUND
  fi
}
