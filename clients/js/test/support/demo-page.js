// What a person does on the web demo's page (a playwright `page`), shared by the browser tests:
// sign in, join a room, say something, read the messages shown. Every step waits for the page
// to show its result (each locator's wait has the page's default deadline); nothing sleeps.

export async function signIn(page, name) {
  await page.locator('#signin-user').fill(name);
  await page.locator('#signin-form button[type=submit]').click();
  await page.locator('#conn-state[data-state="signed-in"]').waitFor();
  await page.locator('#me-name', { hasText: name }).waitFor();
}

export async function joinRoom(page, room) {
  await page.locator('#join-form input[name=room]').fill(room);
  await page.locator('#join-form button[type=submit]').click();
  await page.locator('#conv-title', { hasText: `# ${room}` }).waitFor();
  await page.locator(`#room-list button[data-room="${room}"][aria-current="true"]`).waitFor();
}

export async function say(page, text) {
  await page.locator('#composer-input').fill(text);
  await page.locator('#composer-input').press('Enter');
}

/** The bodies of the messages shown (not system lines), once the last one contains `last`. */
export async function bodies(page, last) {
  await page.locator('#messages .msg:not(.system):not(.pending) .body', { hasText: last }).last().waitFor();
  return page.locator('#messages .msg:not(.system) .body').allTextContents();
}
