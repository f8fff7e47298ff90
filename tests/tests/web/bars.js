// A display component: draws an item's first text (numbers) as bars.
mtos.onitem(function (item) {
  var text = item.parts[0] && item.parts[0].text || '';
  var bars = document.getElementById('bars');
  var numbers = text.split(/\s+/).map(Number).filter(function (n) { return n > 0; });
  var max = Math.max.apply(null, numbers.concat([1]));
  numbers.forEach(function (n) {
    var b = document.createElement('div');
    b.className = 'bar';
    b.style.height = Math.round(110 * n / max) + 'px';
    b.textContent = String(n);
    bars.appendChild(b);
  });
  document.getElementById('title').textContent = 'bar chart of ' + numbers.length + ' numbers by ' + item.author;
  mtos.resize(220);
});
