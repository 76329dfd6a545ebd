// SPDX-License-Identifier: MIT
/*
 * server.c - listening sockets, connections and framing, and the epoll
 * transport.
 *
 * A connection owns two evbuffers: bytes received and not yet framed, and
 * replies not yet sent. The transport fills the first and drains the
 * second; conn_input() cuts frames and hands each to the session. Memory is
 * bounded both ways: at most one frame plus one read is buffered on input,
 * and a connection stops being read while more than out_high bytes of
 * replies wait to be sent (a client that never reads stalls only itself).
 *
 * The epoll transport reads with recvmsg() from a libevent read event,
 * because memory objects arrive as SCM_RIGHTS and a bufferevent cannot
 * receive ancillary data; replies go out through a bufferevent, whose write
 * low-water callback resumes reading.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define READ_CHUNK (64u << 10)
#define MAX_FDS_PER_MSG 16

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* STATUS= for systemctl status: live counts of clients and mapped bytes. */
void srv_notify_status(const struct srv *s)
{
	uint64_t mapped = 0;

	for (uint32_t i = 0; i < s->devices.ndoms; i++) {
		struct dom_stats st;

		dom_domain_stats(s->devices.doms[i], &st);
		mapped += st.mapped_bytes;
	}
	(void)sd_notifyf(0, "STATUS=%u clients, %" PRIu64 " bytes mapped, %" PRIu64
			 " bytes of client memory", s->nconns, mapped, s->devices.pmem.stats.bytes);
}

const struct transport_ops *srv_transport(const struct srv *s)
{
	return s->io == IO_URING ? &uring_transport : &epoll_transport;
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg);

/* ==== policy ============================================================== */

static bool peer_allowed(const struct policy *p, int fd, const struct ucred *cr)
{
	gid_t groups[256];
	socklen_t len = sizeof(groups);

	size_t ngroups = 0;

	if (cr->uid == 0 || cr->uid == p->self_uid)
		return true;
	for (unsigned int i = 0; i < p->nuids; i++)
		if (cr->uid == p->uids[i])
			return true;
	/* Supplementary groups of the peer, as the kernel saw them at connect(). */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
		ngroups = len / sizeof(gid_t);
	for (unsigned int g = 0; g <= p->ngids; g++) {
		gid_t want;

		if (g < p->ngids)
			want = p->gids[g];
		else if (p->allow_socket_group && p->sock_gid_valid)
			want = p->sock_gid;
		else
			break;
		if (cr->gid == want)
			return true;
		for (size_t i = 0; i < ngroups; i++)
			if (groups[i] == want)
				return true;
	}
	return false;
}

/* ==== connections =========================================================== */

int conn_add_fds(struct conn *c, const int *fds, int n)
{
	int kept = 0;

	for (int i = 0; i < n; i++) {
		int *nf;

		if (c->nfds >= c->srv->lim.max_fds) {
			close(fds[i]);
			continue;
		}
		nf = realloc(c->fds, (c->nfds + 1) * sizeof(*nf));
		if (!nf) {
			/*
			 * Dropping this fd would hand the next one to the frame it
			 * belongs to: a later MEM_IMPORT would register another
			 * memory object. End the connection instead (the client
			 * sees it closed); its frames are not read any more.
			 */
			if (!c->dead)
				log_err("connection fd %d: out of memory for a received fd: closing",
					c->fd);
			c->dead = true;
			close(fds[i]);
			continue;
		}
		c->fds = nf;
		c->fds[c->nfds++] = fds[i];
		kept++;
	}
	return kept;
}

int conn_take_fd(struct conn *c)
{
	int fd;

	if (!c->nfds)
		return -1;
	fd = c->fds[0];
	memmove(c->fds, c->fds + 1, (c->nfds - 1) * sizeof(*c->fds));
	c->nfds--;
	return fd;
}

static void conn_free(struct conn *c)
{
	struct srv *s = c->srv;

	srv_transport(s)->detach(c);
	if (c->resume)
		event_free(c->resume);
	session_free(c->sess);
	for (uint32_t i = 0; i < c->nfds; i++)
		close(c->fds[i]);
	free(c->fds);
	if (c->fd >= 0)
		close(c->fd);
	if (c->in)
		evbuffer_free(c->in);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c);
	/*
	 * The last client left: give the heap its sessions and buffers grew back
	 * to the kernel. free() only trims the top of glibc's heap, so without
	 * this the daemon's RSS stays near its peak until the next load.
	 */
	if (!s->nconns)
		malloc_trim(0);
	if (!s->stopping)
		srv_notify_status(s);
}

void conn_closed(struct conn *c, int err)
{
	if (err)
		log_debug("connection fd %d: %s", c->fd, strerror(-err));
	conn_free(c);
}

/* Close a connection that is finished once its replies are out. */
static bool conn_maybe_finish(struct conn *c)
{
	if (c->dead && (!c->out || evbuffer_get_length(c->out) == 0)) {
		conn_free(c);
		return true;
	}
	return false;
}

static void conn_set_paused(struct conn *c, bool pause)
{
	if (c->read_paused == pause)
		return;
	c->read_paused = pause;
	srv_transport(c->srv)->pause_read(c, pause);
}

void conn_finish(struct conn *c)
{
	conn_set_paused(c, true);
	srv_transport(c->srv)->kick_write(c);
	(void)conn_maybe_finish(c);
}

void conn_input(struct conn *c)
{
	struct srv *s = c->srv;
	uint32_t handled = 0;

	while (!c->dead) {
		size_t avail = evbuffer_get_length(c->in);
		uint32_t max_frame = s->lim.max_frame;
		int64_t flen;
		uint8_t *p;

		if (avail < sizeof(struct proto_hdr))
			break;
		/* Its device accesses wait for the fault service: take no more for now. */
		if (session_throttled(c->sess)) {
			conn_set_paused(c, true);
			break;
		}
		p = evbuffer_pullup(c->in, sizeof(struct proto_hdr));
		flen = proto_frame_len(p, avail, max_frame);
		if (flen < 0) {
			/* Unframeable: answer why, with the id if it is readable, then close. */
			struct proto_hdr h;
			struct proto_status st = { .status = (int32_t)flen };

			memcpy(&h, p, sizeof(h));
			proto_hdr_init(&h, session_version(c->sess), PROTO_RPY_ERROR,
				       sizeof(h) + sizeof(st), h.id);
			evbuffer_add(c->out, &h, sizeof(h));
			evbuffer_add(c->out, &st, sizeof(st));
			s->stats.frames_in++;
			s->stats.frames_bad++;
			c->dead = true;
			break;
		}
		if (avail < (size_t)flen)
			break;
		/* What the client put in its ring before this frame goes first. */
		if (session_ring(c->sess) && !ring_drained_for_socket(session_ring(c->sess)))
			break;
		p = evbuffer_pullup(c->in, flen);
		s->stats.frames_in++;
		session_frame(c->sess, p, (size_t)flen);
		evbuffer_drain(c->in, (size_t)flen);
		/* Backpressure: stop taking requests while replies pile up unsent (or undurable). */
		if (evbuffer_get_length(c->out) > s->lim.out_high ||
		    (c->sess && persist_held(c->sess) > s->lim.out_high)) {
			conn_set_paused(c, true);
			break;
		}
		/* Fairness: let other connections in after max_inflight frames. */
		if (++handled >= s->lim.max_inflight)
			break;
	}
	if (c->dead)
		conn_set_paused(c, true);
	srv_transport(s)->kick_write(c);
	if (conn_maybe_finish(c))
		return;
	/* More frames already buffered: come back after the other connections. */
	if (handled >= s->lim.max_inflight && !c->read_paused &&
	    evbuffer_get_length(c->in) >= sizeof(struct proto_hdr))
		event_active(c->resume, EV_TIMEOUT, 0);
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_input(arg);
}

/* Output drained to the low-water mark: take requests again, or finish. */
void conn_output_drained(struct conn *c)
{
	if (conn_maybe_finish(c))
		return;
	if (c->read_paused && !c->dead && !session_throttled(c->sess) &&
	    evbuffer_get_length(c->out) <= c->srv->lim.out_low) {
		conn_set_paused(c, false);
		/* Frames may already be waiting in the input buffer. */
		conn_input(c);
	}
}

void conn_unthrottle(struct conn *c)
{
	/* The ring stopped taking requests too: poll it again. */
	if (session_ring(c->sess))
		ring_kick(session_ring(c->sess));
	if (c->dead || !c->read_paused || session_throttled(c->sess) ||
	    evbuffer_get_length(c->out) > c->srv->lim.out_low)
		return;
	conn_set_paused(c, false);
	/* Frames may already be buffered; take them from the loop, not from here. */
	event_active(c->resume, EV_TIMEOUT, 0);
}

/* ==== the epoll transport (libevent) ======================================= */

static void ep_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MSG)];
	struct evbuffer_iovec vec[2];
	struct iovec iov[2];
	struct msghdr msg = { 0 };
	int nvec;
	ssize_t n;

	(void)what;
	nvec = evbuffer_reserve_space(c->in, READ_CHUNK, vec, 2);
	if (nvec <= 0) {
		conn_closed(c, -ENOMEM);
		return;
	}
	for (int i = 0; i < nvec; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
	}
	msg.msg_iov = iov;
	msg.msg_iovlen = (size_t)nvec;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		conn_closed(c, -errno);
		return;
	}
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int nf = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int fds[MAX_FDS_PER_MSG];

			memcpy(fds, CMSG_DATA(cm), (size_t)nf * sizeof(int));
			conn_add_fds(c, fds, nf);
		}
	}
	if (msg.msg_flags & MSG_CTRUNC)
		log_info("connection fd %d: too many fds in one message, extras dropped", fd);
	if (n == 0) {
		conn_closed(c, 0);
		return;
	}
	/* Commit exactly what arrived, across the reserved vectors. */
	for (int i = 0; i < nvec; i++) {
		size_t take = (size_t)n < vec[i].iov_len ? (size_t)n : vec[i].iov_len;

		vec[i].iov_len = take;
		n -= (ssize_t)take;
	}
	evbuffer_commit_space(c->in, vec, nvec);
	conn_input(c);
}

static void ep_write_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	conn_output_drained(arg);
}

static void ep_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
		conn_closed(c, what & BEV_EVENT_ERROR ? -EPIPE : 0);
}

static int ep_attach(struct conn *c)
{
	struct srv *s = c->srv;

	c->bev = bufferevent_socket_new(s->base, c->fd, 0);
	if (!c->bev)
		return -ENOMEM;
	c->out = bufferevent_get_output(c->bev);
	bufferevent_setcb(c->bev, NULL, ep_write_cb, ep_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, s->lim.out_low, 0);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
	c->rev = event_new(s->base, c->fd, EV_READ | EV_PERSIST, ep_read_cb, c);
	if (!c->rev || event_add(c->rev, NULL))
		return -ENOMEM;
	return 0;
}

static void ep_kick_write(struct conn *c)
{
	(void)c; /* a bufferevent writes as soon as its output buffer has data */
}

static void ep_pause_read(struct conn *c, bool pause)
{
	if (pause)
		event_del(c->rev);
	else
		event_add(c->rev, NULL);
}

static void ep_detach(struct conn *c)
{
	if (c->rev)
		event_free(c->rev);
	if (c->bev)
		bufferevent_free(c->bev);
	c->rev = NULL;
	c->bev = NULL;
	c->out = NULL;
}

const struct transport_ops epoll_transport = {
	.attach = ep_attach,
	.kick_write = ep_kick_write,
	.pause_read = ep_pause_read,
	.detach = ep_detach,
};

/* ==== accepting ============================================================= */

static void deny(struct srv *s, int fd, const struct ucred *cr, int status, const char *why)
{
	struct proto_hdr h;
	struct proto_status st = { .status = status };
	uint8_t buf[sizeof(h) + sizeof(st)];

	s->stats.denied++;
	log_warn("refused pid %d uid %u gid %u: %s", (int)cr->pid, (unsigned int)cr->uid,
		 (unsigned int)cr->gid, why);
	proto_hdr_init(&h, PROTO_VERSION, PROTO_RPY_ERROR, sizeof(buf), 0);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), &st, sizeof(st));
	(void)!send(fd, buf, sizeof(buf), MSG_NOSIGNAL | MSG_DONTWAIT);
	close(fd);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct srv *s = arg;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct conn *c;

	(void)l;
	(void)sa;
	(void)len;
	if (s->stopping || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
		close(fd);
		return;
	}
	if (!peer_allowed(&s->pol, fd, &cr)) {
		deny(s, fd, &cr, -EACCES, "not allowed by the access policy");
		return;
	}
	/*
	 * Every connection costs the daemon a descriptor and its buffers (about
	 * 70 KiB on io_uring): users other than root and the daemon's own are
	 * held to max_conns_per_uid each and max_conns together, so that the
	 * administrators (iovadctl) always get in.
	 */
	if (cr.uid != 0 && cr.uid != s->pol.self_uid) {
		uint32_t all = 0, mine = 0;

		for (struct conn *o = s->conns; o; o = o->next) {
			if (o->uid == 0 || o->uid == s->pol.self_uid)
				continue;
			all++;
			mine += o->uid == cr.uid;
		}
		if (mine >= s->lim.max_conns_per_uid) {
			deny(s, fd, &cr, -EDQUOT, "max_conns_per_uid connections of this user");
			return;
		}
		if (all >= s->lim.max_conns) {
			deny(s, fd, &cr, -EDQUOT, "max_conns connections of unprivileged users");
			return;
		}
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->fd = fd;
	c->uid = cr.uid;
	c->in = evbuffer_new();
	c->resume = event_new(s->base, -1, 0, conn_resume_cb, c);
	c->sess = c->in && c->resume ? session_new(s, c, cr.pid, cr.uid, cr.gid) : NULL;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	if (!c->sess || srv_transport(s)->attach(c)) {
		log_err("out of memory accepting pid %d", (int)cr.pid);
		conn_free(c);
		return;
	}
	log_info("session %" PRIu64 ": pid %d uid %u gid %u connected", session_id(c->sess),
		 (int)cr.pid, (unsigned int)cr.uid, (unsigned int)cr.gid);
	srv_notify_status(s);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	(void)l;
	(void)arg;
	/* EMFILE and friends: keep going, the next accept may succeed. */
	log_warn("accept: %s", evutil_socket_error_to_string(err));
}

static int add_listener(struct srv *s, int fd)
{
	struct evconnlistener **nl, *l;

	l = evconnlistener_new(s->base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
			       0, fd);
	if (!l)
		return -ENOMEM;
	evconnlistener_set_error_cb(l, accept_error_cb);
	nl = realloc(s->listeners, (s->nlisteners + 1) * sizeof(*nl));
	if (!nl) {
		evconnlistener_free(l);
		return -ENOMEM;
	}
	s->listeners = nl;
	s->listeners[s->nlisteners++] = l;
	return 0;
}

/* The socket file's group decides who else may connect (SocketGroup=). */
static void policy_from_path(struct srv *s, const char *path)
{
	struct stat st;

	if (!s->pol.sock_gid_valid && path[0] && stat(path, &st) == 0) {
		s->pol.sock_gid = st.st_gid;
		s->pol.sock_gid_valid = true;
		/* SIGHUP re-reads the group from here, own socket or inherited. */
		if (!s->policy_path)
			s->policy_path = strdup(path);
	}
}

int srv_listen_path(struct srv *s, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A socket file nobody answers on is a leftover of a crash: replace it. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		return -EADDRINUSE;
	}
	if (errno == ECONNREFUSED)
		unlink(path);
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	old = umask(0117); /* srw-rw----: the owner and the socket's group */
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, 128) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	r = add_listener(s, fd);
	if (r) {
		close(fd);
		unlink(path);
		return r;
	}
	s->own_socket_path = strdup(path);
	policy_from_path(s, path);
	log_info("listening on %s", path);
	return 0;
}

int srv_adopt_inherited(struct srv *s, int n, char **names, const bool *claimed)
{
	int adopted = 0;

	for (int fd = SD_LISTEN_FDS_START; n > 0 && fd < SD_LISTEN_FDS_START + n; fd++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		const char *name = names && names[fd - SD_LISTEN_FDS_START] ?
					   names[fd - SD_LISTEN_FDS_START] : "";

		if (claimed[fd - SD_LISTEN_FDS_START])
			continue; /* persist.c's */
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
			log_warn("inherited fd %d (%s) is not a listening Unix stream socket: ignored",
				 fd, name);
			close(fd);
			continue;
		}
		/* Our own socket, back from the fd store: it stays there. */
		if (!strcmp(name, "listen"))
			s->socket_stored = true;
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 || add_listener(s, fd)) {
			close(fd);
			continue;
		}
		if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
		    len > offsetof(struct sockaddr_un, sun_path))
			policy_from_path(s, sa.sun_path);
		log_info("adopted inherited socket fd %d", fd);
		adopted++;
	}
	return adopted;
}

void srv_stop_listening(struct srv *s)
{
	for (uint32_t i = 0; i < s->nlisteners; i++)
		evconnlistener_free(s->listeners[i]);
	free(s->listeners);
	s->listeners = NULL;
	s->nlisteners = 0;
	if (s->own_socket_path) {
		/* In the fd store, the socket outlives us: clients wait in its backlog. */
		if (!s->socket_stored)
			unlink(s->own_socket_path);
		free(s->own_socket_path);
		s->own_socket_path = NULL;
	}
	free(s->policy_path);
	s->policy_path = NULL;
}

bool srv_listening_on(struct srv *s, const char *path)
{
	for (uint32_t i = 0; i < s->nlisteners; i++) {
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		int fd = evconnlistener_get_fd(s->listeners[i]);

		if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
		    len > offsetof(struct sockaddr_un, sun_path) &&
		    !strncmp(sa.sun_path, path, sizeof(sa.sun_path)))
			return true;
	}
	return false;
}

void srv_store_own_listener(struct srv *s)
{
	if (!s->nlisteners)
		return;
	if (persist_store_listener(s, evconnlistener_get_fd(s->listeners[s->nlisteners - 1])))
		s->socket_stored = true;
}

void srv_close_all(struct srv *s)
{
	while (s->conns)
		conn_free(s->conns);
}
