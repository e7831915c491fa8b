/* wspush — bounds of the product that several modules must agree on (the
 * ini parser, the token codec, the IPC codec, the subscribe path). One
 * definition so that they cannot drift apart.
 */
#ifndef WSPUSH_WSPUSH_H
#define WSPUSH_WSPUSH_H

/* Channels per connection, per publish, per token claim. */
#define WSPUSH_MAX_CHANNELS 32

#endif
