#include "pubclient.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Answers are small (an id, a short error text). */
#define PUBC_MAX_ANSWER 4096

static long pubc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int pubc_init(struct pubc *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->next_id = 1;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof c->path)
        return PUBC_E_INVALID;
    memcpy(c->path, path, n + 1);
    return 0;
}

static void pubc_drop(struct pubc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    buf_reset(&c->in);
}

void pubc_close(struct pubc *c)
{
    pubc_drop(c);
    buf_free(&c->in);
    buf_free(&c->out);
}

static int pubc_connect(struct pubc *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return PUBC_E_UNAVAILABLE;
    /* A Unix connect never goes "in progress": it succeeds, or fails with
     * EAGAIN when the backlog is full, which counts as unavailable too. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return PUBC_E_UNAVAILABLE;
    }
    c->fd = fd;
    return 0;
}

/* Nothing is ever sent unasked, so a readable idle connection is one the
 * server closed (EOF) or broke. */
static int pubc_is_stale(struct pubc *c)
{
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    return poll(&p, 1, 0) != 0;
}

static int pubc_wait(int fd, short ev, long deadline)
{
    for (;;) {
        long left = deadline - pubc_now_ms();
        if (left <= 0)
            return PUBC_E_TIMEOUT;
        struct pollfd p = { .fd = fd, .events = ev };
        int n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return PUBC_E_UNAVAILABLE;
    }
}

/* Writes c->out whole. Returns 0, PUBC_E_TIMEOUT or PUBC_E_UNAVAILABLE
 * (EPIPE, ECONNRESET, ...); *sent counts the bytes that left. */
static int pubc_send(struct pubc *c, long deadline, size_t *sent)
{
    size_t off = 0, len = c->out.len;
    *sent = 0;
    while (off < len) {
        ssize_t n = send(c->fd, c->out.data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            *sent = off;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = pubc_wait(c->fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        return PUBC_E_UNAVAILABLE;
    }
    return 0;
}

/* Reads until one whole answer is buffered and decodes it into *msg
 * (strings into c->in). Returns the frame length or a PUBC_E_ code. */
static ssize_t pubc_recv(struct pubc *c, long deadline, struct ipc_msg *msg)
{
    for (;;) {
        ssize_t n = ipc_decode(buf_head(&c->in), buf_used(&c->in), PUBC_MAX_ANSWER, msg);
        if (n > 0)
            return n;
        if (n != IPC_NEED_MORE)
            return PUBC_E_PROTO;
        if (buf_reserve(&c->in, 4096) < 0)
            return PUBC_E_NOMEM;
        ssize_t r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (r > 0) {
            c->in.len += (size_t)r;
            continue;
        }
        if (r == 0)
            return PUBC_E_UNAVAILABLE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return PUBC_E_UNAVAILABLE;
        int rc = pubc_wait(c->fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
}

/* Sends c->out (request req_id) and waits for its answer. On success the
 * answer is in *msg and its frame (len returned) is still in c->in. */
static ssize_t pubc_roundtrip(struct pubc *c, uint32_t req_id, int timeout_ms, struct ipc_msg *msg)
{
    long deadline = pubc_now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    ssize_t rc;
    size_t sent;
    int reused = 0;
    if (c->fd >= 0) {
        reused = 1;
        if (pubc_is_stale(c)) {
            pubc_drop(c);
            reused = 0;
        }
    }
    if (c->fd < 0 && (rc = pubc_connect(c)) < 0)
        goto fail;
    rc = pubc_send(c, deadline, &sent);
    /* A reused connection the server closed between the probe and the
     * write: nothing of this request was processed, so one fresh try. */
    if (rc == PUBC_E_UNAVAILABLE && reused) {
        pubc_drop(c);
        if ((rc = pubc_connect(c)) < 0)
            goto fail;
        rc = pubc_send(c, deadline, &sent);
    }
    if (rc < 0)
        goto fail;
    rc = pubc_recv(c, deadline, msg);
    if (rc < 0)
        goto fail;
    if (msg->req_id != req_id) {
        rc = PUBC_E_PROTO;
        goto fail;
    }
    return rc;
fail:
    pubc_drop(c);
    return rc;
}

static void pubc_copy(char *dst, size_t cap, const struct ipc_str *s)
{
    size_t n = s->len < cap - 1 ? s->len : cap - 1;
    memcpy(dst, s->p, n);
    dst[n] = '\0';
}

/* Turns a decoded answer into the result; expect is the success type. */
static int pubc_answer(struct pubc *c, ssize_t flen, const struct ipc_msg *msg, uint8_t expect,
                       struct pubc_result *res)
{
    int rc = 0;
    if (msg->type == expect) {
        res->count = msg->count;
        if (expect == IPC_ACK)
            pubc_copy(res->id, sizeof res->id, &msg->id);
    } else if (msg->type == IPC_ERROR) {
        res->code = msg->code;
        pubc_copy(res->text, sizeof res->text, &msg->text);
        rc = PUBC_E_REFUSED;
    } else {
        pubc_drop(c);
        return PUBC_E_PROTO;
    }
    buf_consume(&c->in, (size_t)flen);
    return rc;
}

int pubc_publish(struct pubc *c, const struct pat_name *channels, int n,
                 const char *data, size_t len, int timeout_ms, struct pubc_result *res)
{
    struct ipc_str ch[IPC_MAX_CHANNELS];
    struct ipc_msg msg;
    memset(res, 0, sizeof *res);
    if (n < 1 || n > IPC_MAX_CHANNELS || len > UINT32_MAX)
        return PUBC_E_INVALID;
    for (int i = 0; i < n; i++) {
        ch[i].p = channels[i].p;
        ch[i].len = channels[i].len;
    }
    uint32_t id = c->next_id++;
    buf_reset(&c->out);
    int rc = ipc_encode_publish(&c->out, id, ch, n, data, len);
    if (rc < 0)
        return rc == -ENOMEM ? PUBC_E_NOMEM : PUBC_E_INVALID;
    ssize_t flen = pubc_roundtrip(c, id, timeout_ms, &msg);
    if (flen < 0)
        return (int)flen;
    return pubc_answer(c, flen, &msg, IPC_ACK, res);
}

int pubc_disconnect(struct pubc *c, const char *user, int timeout_ms, struct pubc_result *res)
{
    struct ipc_msg msg;
    memset(res, 0, sizeof *res);
    size_t ulen = strlen(user);
    if (ulen < 1 || ulen > 255)
        return PUBC_E_INVALID;
    uint32_t id = c->next_id++;
    buf_reset(&c->out);
    int rc = ipc_encode_disconnect(&c->out, id, user, ulen);
    if (rc < 0)
        return rc == -ENOMEM ? PUBC_E_NOMEM : PUBC_E_INVALID;
    ssize_t flen = pubc_roundtrip(c, id, timeout_ms, &msg);
    if (flen < 0)
        return (int)flen;
    return pubc_answer(c, flen, &msg, IPC_DISCONNECTED, res);
}

const char *pubc_strerror(int code)
{
    switch (code) {
    case PUBC_E_UNAVAILABLE: return "ws-server unavailable";
    case PUBC_E_TIMEOUT:     return "ws-server did not answer in time";
    case PUBC_E_REFUSED:     return "ws-server refused the request";
    case PUBC_E_PROTO:       return "unexpected answer from ws-server";
    case PUBC_E_INVALID:     return "invalid request";
    case PUBC_E_NOMEM:       return "out of memory";
    default:                 return "publish failed";
    }
}
