const leftPad = require("left-pad");
console.log(leftPad("1", 3, "0"));
