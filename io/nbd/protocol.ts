// io/nbd/protocol.ts: the NBD protocol's numbers (magics, option, reply, command and error codes,
// flags), as in the NBD spec doc/proto.md. Constants only; no behaviour.

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n
/** "IHAVEOPT": the newstyle magic, sent by the server and before every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n
/** Magic opening every option reply. */
export const NBD_REP_MAGIC = 0x3e889045565a9n
export const NBD_REQUEST_MAGIC = 0x25609513
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_NO_ZEROES = 1 << 1
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_C_NO_ZEROES = 1 << 1

// Transmission flags (per export).
export const NBD_FLAG_HAS_FLAGS = 1 << 0
export const NBD_FLAG_READ_ONLY = 1 << 1
export const NBD_FLAG_SEND_FLUSH = 1 << 2
export const NBD_FLAG_SEND_FUA = 1 << 3
export const NBD_FLAG_ROTATIONAL = 1 << 4
export const NBD_FLAG_SEND_TRIM = 1 << 5
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
export const NBD_FLAG_SEND_DF = 1 << 7
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8
export const NBD_FLAG_SEND_RESIZE = 1 << 9
export const NBD_FLAG_SEND_CACHE = 1 << 10
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11

// Options.
export const NBD_OPT_EXPORT_NAME = 1
export const NBD_OPT_ABORT = 2
export const NBD_OPT_LIST = 3
export const NBD_OPT_PEEK_EXPORT = 4
export const NBD_OPT_STARTTLS = 5
export const NBD_OPT_INFO = 6
export const NBD_OPT_GO = 7
export const NBD_OPT_STRUCTURED_REPLY = 8
export const NBD_OPT_LIST_META_CONTEXT = 9
export const NBD_OPT_SET_META_CONTEXT = 10
export const NBD_OPT_EXTENDED_HEADERS = 11

// Option reply types; errors have bit 31 set.
export const NBD_REP_ACK = 1
export const NBD_REP_SERVER = 2
export const NBD_REP_INFO = 3
export const NBD_REP_META_CONTEXT = 4
const REP_ERR = 0x80000000
export const NBD_REP_ERR_UNSUP = REP_ERR + 1
export const NBD_REP_ERR_POLICY = REP_ERR + 2
export const NBD_REP_ERR_INVALID = REP_ERR + 3
export const NBD_REP_ERR_PLATFORM = REP_ERR + 4
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7
export const NBD_REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9

// Information types in NBD_REP_INFO.
export const NBD_INFO_EXPORT = 0
export const NBD_INFO_NAME = 1
export const NBD_INFO_DESCRIPTION = 2
export const NBD_INFO_BLOCK_SIZE = 3

// Commands.
export const NBD_CMD_READ = 0
export const NBD_CMD_WRITE = 1
export const NBD_CMD_DISC = 2
export const NBD_CMD_FLUSH = 3
export const NBD_CMD_TRIM = 4
export const NBD_CMD_CACHE = 5
export const NBD_CMD_WRITE_ZEROES = 6
export const NBD_CMD_BLOCK_STATUS = 7

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1
export const NBD_CMD_FLAG_DF = 1 << 2
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4

// Structured reply flags and chunk types.
export const NBD_REPLY_FLAG_DONE = 1 << 0
export const NBD_REPLY_TYPE_NONE = 0
export const NBD_REPLY_TYPE_OFFSET_DATA = 1
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

// Error values on the wire (the spec's, equal to Linux errno numbers).
export const NBD_EPERM = 1
export const NBD_EIO = 5
export const NBD_ENOMEM = 12
export const NBD_EINVAL = 22
export const NBD_ENOSPC = 28
export const NBD_EOVERFLOW = 75
export const NBD_ENOTSUP = 95
export const NBD_ESHUTDOWN = 108

/** Sizes of the fixed parts on the wire, in bytes. */
export const REQUEST_HEADER_BYTES = 28
export const SIMPLE_REPLY_BYTES = 16
export const STRUCTURED_REPLY_HEADER_BYTES = 20
/** The zero padding after NBD_OPT_EXPORT_NAME's reply unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PADDING = 124

/** The block sizes this server advertises (NBD_INFO_BLOCK_SIZE) and enforces. */
export const MIN_BLOCK_BYTES = 512
export const PREFERRED_BLOCK_BYTES = 4096
export const MAX_BLOCK_BYTES = 32 * 1024 * 1024
/** Longest option payload accepted during the handshake; longer ones end the connection. */
export const MAX_OPTION_BYTES = 64 * 1024
/** Longest export name (the spec's limit for names). */
export const MAX_NAME_BYTES = 4096
