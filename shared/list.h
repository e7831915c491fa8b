/* list — the one intrusive doubly linked list: circular, with a sentinel
 * head, so insert and remove never branch on "first" or "last" and an
 * object moves between lists (live -> dead) in O(1).
 *
 * The object embeds a struct list_node and gets back to itself with
 * list_entry(). A node that is on no list has next == prev == itself
 * (list_node_init, list_node_linked() says 0); list_remove() takes only a
 * node that is on the list given (the count would be wrong otherwise).
 * list_push() adds at the front: the front is the newest, list_last()
 * the oldest.
 *
 * The "live list + dead list + reap after the pass" pattern every server
 * object follows (connections, publish peers, FastCGI connections): killing
 * moves the node to the dead list; the after-pass hook pops and frees
 * everything there. Iterating with list_for_each_safe while callbacks kill
 * entries is safe, because killing only moves the current node.
 */
#ifndef WSPUSH_LIST_H
#define WSPUSH_LIST_H

#include <stddef.h>

struct list_node {
    struct list_node *next, *prev;
};

/* A list head; count is kept so that "how many" is O(1). */
struct list {
    struct list_node head;
    size_t           n;
};

#define list_entry(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

static inline void list_init(struct list *l)
{
    l->head.next = l->head.prev = &l->head;
    l->n = 0;
}

static inline void list_node_init(struct list_node *n) { n->next = n->prev = n; }
static inline int  list_empty(const struct list *l) { return l->head.next == &l->head; }
static inline int  list_node_linked(const struct list_node *n) { return n->next != n; }

static inline void list_push(struct list *l, struct list_node *n)
{
    n->next = l->head.next;
    n->prev = &l->head;
    l->head.next->prev = n;
    l->head.next = n;
    l->n++;
}

/* Links n in front of at (a node of l, or &l->head for the end). */
static inline void list_insert_before(struct list *l, struct list_node *at, struct list_node *n)
{
    n->next = at;
    n->prev = at->prev;
    at->prev->next = n;
    at->prev = n;
    l->n++;
}

/* Unlinks n from l (n must be on l). */
static inline void list_remove(struct list *l, struct list_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    list_node_init(n);
    l->n--;
}

static inline void list_move(struct list *from, struct list *to, struct list_node *n)
{
    list_remove(from, n);
    list_push(to, n);
}

/* The first node, or NULL when empty. */
static inline struct list_node *list_first(const struct list *l)
{
    return list_empty(l) ? NULL : l->head.next;
}

/* The last node (the first one pushed), or NULL when empty. */
static inline struct list_node *list_last(const struct list *l)
{
    return list_empty(l) ? NULL : l->head.prev;
}

/* Iterates nodes; `tmp` holds the next one so the current may be moved. */
#define list_for_each_safe(pos, tmp, l) \
    for ((pos) = (l)->head.next, (tmp) = (pos)->next; (pos) != &(l)->head; \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
