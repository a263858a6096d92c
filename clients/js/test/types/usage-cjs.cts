// The CommonJS view of the declarations (chinwag.d.cts).
import chinwag = require('chinwag');
const client = chinwag.chat('ws://127.0.0.1:8080/gotalk/', { token: 't' });
client.on('signed-in', (me) => console.log(me.user, me.reconnected));
const e: typeof chinwag.ChatError = chinwag.ChatError;
console.log(e, chinwag.default.connect === chinwag.connect);
export {};
