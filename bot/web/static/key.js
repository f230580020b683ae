/* The Mini App key page: send the key to our server with the launch's initData; never through Telegram.
 * No framework, no inline script (the page's CSP allows only this file and telegram-web-app.js). */
(function () {
  'use strict';
  var tg = window.Telegram && window.Telegram.WebApp;
  var body = document.body;
  var input = document.getElementById('key');
  var toggle = document.getElementById('toggle');
  var form = document.getElementById('form');
  var fallback = document.getElementById('submit');
  var statusLine = document.getElementById('status');
  var help = document.getElementById('help');
  var initData = (tg && tg.initData) || '';
  var main = tg && tg.MainButton;
  var busy = false;
  var THEME = {
    bg_color: '--bg', text_color: '--text', hint_color: '--hint', link_color: '--link',
    button_color: '--button', button_text_color: '--button-text', secondary_bg_color: '--secondary-bg',
    destructive_text_color: '--error'
  };

  function t(name) { return body.getAttribute('data-t-' + name) || ''; }

  function applyTheme() {
    var params = (tg && tg.themeParams) || {};
    Object.keys(THEME).forEach(function (name) {
      var value = params[name];
      if (typeof value === 'string' && /^#[0-9a-fA-F]{3,8}$/.test(value)) {
        document.documentElement.style.setProperty(THEME[name], value);
      }
    });
  }

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind || '';
  }

  function explain(text) {
    help.textContent = text || '';
    help.hidden = !text;
  }

  function setBusy(on) {
    busy = on;
    input.disabled = on;
    fallback.disabled = on;
    if (main) {
      if (on) { main.showProgress(false); main.disable(); } else { main.hideProgress(); main.enable(); }
    }
  }

  function finished() {
    input.disabled = true;
    fallback.hidden = true;
    if (main) { main.hideProgress(); main.hide(); }
  }

  function request(path, options) {
    options.cache = 'no-store';
    options.credentials = 'omit';
    options.referrerPolicy = 'no-referrer';
    return fetch(path, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data || {} };
      });
    });
  }

  function submit() {
    if (busy) { return; }
    var key = input.value;
    if (!key.trim()) { say(t('empty'), 'error'); input.focus(); return; }
    if (!initData) { say(t('open_in_telegram'), 'error'); return; }
    setBusy(true);
    explain('');
    say('', '');
    request('api/key', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ init_data: initData, key: key })
    }).then(answered, function () { setBusy(false); say(t('network'), 'error'); });
    key = null;
  }

  function answered(result) {
    var status = result.status;
    var data = result.data;
    if (status === 202) {
      input.value = '';
      input.type = 'password';
      finished();
      say(t('checking'), 'ok');
      poll();
      return;
    }
    setBusy(false);
    if (status === 422) {
      say(t('problem'), 'error');
      explain(data.help || '');
      input.focus();
      input.select();
    } else if (status === 401) {
      finished();
      say(t('expired'), 'error');
    } else if (status === 409) {
      finished();
      say(t('not_at_paste_step'), 'error');
    } else if (status === 429) {
      say(t('rate_limited'), 'error');
    } else {
      say(t('unavailable'), 'error');
    }
  }

  function poll() {
    var started = Date.now();
    function again(delay) {
      if (Date.now() - started < 300000) { window.setTimeout(once, delay); }
    }
    function once() {
      request('api/status', { method: 'GET', headers: { 'Authorization': 'tma ' + initData } })
        .then(function (result) {
          var state = result.status === 200 ? result.data.state : null;
          if (result.status === 401) { return; }
          if (!state || state === 'checking') { again(1000); return; }
          verdict(state, result.data.text || '');
        }, function () { again(2000); });
    }
    again(600);
  }

  function verdict(state, text) {
    body.setAttribute('data-state', state);
    if (state === 'problem' || state === 'waiting') {
      say(t('problem'), 'error');
      explain(text);
      return;
    }
    say(state === 'held' ? t('held') : t('done'), 'ok');
    explain(text);
    if (tg && typeof tg.close === 'function') {
      window.setTimeout(function () { tg.close(); }, 2500);
    }
  }

  toggle.addEventListener('click', function () {
    var hidden = input.type === 'password';
    input.type = hidden ? 'text' : 'password';
    toggle.textContent = hidden ? t('hide') : t('show');
    toggle.setAttribute('aria-pressed', hidden ? 'true' : 'false');
    input.focus();
  });
  form.addEventListener('submit', function (event) { event.preventDefault(); submit(); });

  applyTheme();
  if (tg) {
    if (typeof tg.onEvent === 'function') { tg.onEvent('themeChanged', applyTheme); }
    if (typeof tg.ready === 'function') { tg.ready(); }
    if (typeof tg.expand === 'function') { tg.expand(); }
  }
  if (main && initData) {
    main.setText(t('submit'));
    main.onClick(submit);
    main.show();
    fallback.hidden = true;
  }
  if (!initData) { say(t('open_in_telegram'), 'error'); }
})();
