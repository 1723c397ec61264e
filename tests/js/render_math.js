// Render display-math strings (a JSON array on stdin) with KaTeX and MathJax, as code hosts and
// Jupyter do; print a JSON array of problems. Needs the npm packages katex and mathjax-full.
const katex = require("katex");
const { mathjax } = require("mathjax-full/js/mathjax.js");
const { TeX } = require("mathjax-full/js/input/tex.js");
const { liteAdaptor } = require("mathjax-full/js/adaptors/liteAdaptor.js");
const { RegisterHTMLHandler } = require("mathjax-full/js/handlers/html.js");
const { SerializedMmlVisitor } = require("mathjax-full/js/core/MmlTree/SerializedMmlVisitor.js");
const { STATE } = require("mathjax-full/js/core/MathItem.js");
require("mathjax-full/js/input/tex/base/BaseConfiguration.js");
require("mathjax-full/js/input/tex/ams/AmsConfiguration.js");

const adaptor = liteAdaptor();
RegisterHTMLHandler(adaptor);
const doc = mathjax.document("", { InputJax: new TeX({ packages: ["base", "ams"] }) });
const visitor = new SerializedMmlVisitor();

let input = "";
process.stdin.on("data", (c) => (input += c));
process.stdin.on("end", () => {
  const problems = [];
  JSON.parse(input).forEach((tex, i) => {
    try {
      katex.renderToString(tex, { displayMode: true, throwOnError: true, strict: "error" });
    } catch (e) {
      problems.push(`block ${i}: KaTeX: ${e.message}`);
    }
    try {
      const mml = visitor.visitTree(doc.convert(tex, { display: true, end: STATE.CONVERT }));
      if (mml.includes("<merror")) problems.push(`block ${i}: MathJax: ${mml.match(/<merror[\s\S]*?<\/merror>/)[0]}`);
      for (const m of mml.matchAll(/<mtext[^>]*>([^<]*)<\/mtext>/g)) {
        if (m[1].includes("\\")) problems.push(`block ${i}: MathJax shows a literal backslash: ${m[1]}`);
      }
    } catch (e) {
      problems.push(`block ${i}: MathJax: ${e.message}`);
    }
  });
  process.stdout.write(JSON.stringify(problems));
});
